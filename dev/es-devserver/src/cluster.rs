//! Cluster metadata: indices and their aliases, and the resolution of index expressions
//! (`a,b`, `logs-*`, `-logs-old`, `_all`, aliases, date math) as Elasticsearch does it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};
use crate::index::Index;
use crate::names::{glob_match, is_wildcard, resolve_date_math_name};

/// An alias on one index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AliasMeta {
    /// Filter query applied to searches through the alias.
    pub filter: Option<Value>,
    /// Routing for writes through the alias.
    pub index_routing: Option<String>,
    /// Routing for searches through the alias.
    pub search_routing: Option<String>,
    /// Whether this index is the alias's write index.
    pub is_write_index: Option<bool>,
    /// Hidden alias.
    pub is_hidden: Option<bool>,
}

impl AliasMeta {
    /// As `GET /_alias` shows it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(f) = &self.filter {
            m.insert("filter".into(), f.clone());
        }
        if let Some(r) = &self.index_routing {
            m.insert("index_routing".into(), Value::from(r.as_str()));
        }
        if let Some(r) = &self.search_routing {
            m.insert("search_routing".into(), Value::from(r.as_str()));
        }
        if let Some(w) = self.is_write_index {
            m.insert("is_write_index".into(), Value::Bool(w));
        }
        if let Some(h) = self.is_hidden {
            m.insert("is_hidden".into(), Value::Bool(h));
        }
        Value::Object(m)
    }
}

/// An index and its aliases.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// The index.
    pub index: Arc<Index>,
    /// Aliases by name.
    pub aliases: BTreeMap<String, AliasMeta>,
    /// `index.hidden`.
    pub hidden: bool,
}

/// The cluster metadata.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// Indices by name.
    pub indices: BTreeMap<String, IndexEntry>,
}

/// Index expression options (`ignore_unavailable`, `allow_no_indices`, `expand_wildcards`).
#[derive(Debug, Clone, Copy)]
pub struct ResolveOpts {
    /// Skip missing concrete names.
    pub ignore_unavailable: bool,
    /// Accept expressions that resolve to nothing.
    pub allow_no_indices: bool,
    /// Wildcards expand to open indices.
    pub expand_open: bool,
    /// Wildcards expand to hidden indices too.
    pub expand_hidden: bool,
    /// Aliases are not accepted (index deletion).
    pub forbid_aliases: bool,
    /// Wildcards also match alias names.
    pub wildcards_match_aliases: bool,
    /// Wildcards expand to closed indices.
    pub expand_closed: bool,
    /// Closed indices are an error (`index_closed_exception`), or skipped with
    /// `ignore_unavailable` (search, count, refresh, open point in time).
    pub forbid_closed: bool,
}

impl ResolveOpts {
    /// Search-like defaults: missing names fail, empty results are fine.
    pub fn strict_expand_open() -> Self {
        ResolveOpts {
            ignore_unavailable: false,
            allow_no_indices: true,
            expand_open: true,
            expand_hidden: false,
            forbid_aliases: false,
            wildcards_match_aliases: true,
            expand_closed: false,
            forbid_closed: false,
        }
    }

    /// Like [`ResolveOpts::strict_expand_open`], and closed indices are an error.
    pub fn strict_expand_open_forbid_closed() -> Self {
        ResolveOpts {
            forbid_closed: true,
            ..Self::strict_expand_open()
        }
    }

    /// Applies `ignore_unavailable`, `allow_no_indices` and `expand_wildcards` parameters.
    pub fn with_params(mut self, params: &crate::params::Params) -> EsResult<Self> {
        if let Some(v) = params.bool_opt("ignore_unavailable")? {
            self.ignore_unavailable = v;
        }
        if let Some(v) = params.bool_opt("allow_no_indices")? {
            self.allow_no_indices = v;
        }
        if let Some(ew) = params.get("expand_wildcards") {
            self.expand_open = false;
            self.expand_hidden = false;
            self.expand_closed = false;
            for w in ew.split(',').map(str::trim) {
                match w {
                    "open" => self.expand_open = true,
                    "closed" => self.expand_closed = true,
                    "hidden" => self.expand_hidden = true,
                    "all" => {
                        self.expand_open = true;
                        self.expand_closed = true;
                        self.expand_hidden = true;
                    }
                    "none" => {}
                    other => {
                        return Err(EsError::illegal_argument(format!(
                            "No enum constant org.elasticsearch.action.support.IndicesOptions.WildcardStates.{}",
                            other.to_uppercase()
                        )))
                    }
                }
            }
        }
        Ok(self)
    }
}

/// How an index was reached by an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// Directly or through an alias without a filter.
    Unfiltered,
    /// Only through filtered aliases (documents must match one of the filters).
    Filtered(Vec<Value>),
}

/// A concrete index an expression resolved to.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The index name.
    pub name: String,
    /// The index.
    pub index: Arc<Index>,
    /// Alias filters that apply.
    pub access: Access,
}

/// Where a write to a name goes.
#[derive(Debug, Clone)]
pub enum WriteTarget {
    /// A concrete index (possibly reached through an alias, with its index routing).
    Index(Arc<Index>, Option<String>),
    /// An alias without a usable write index.
    NoWriteIndex,
    /// Nothing by that name.
    Missing,
}

/// The message for writes through an alias with no write index.
pub fn no_write_index_error(alias: &str) -> EsError {
    EsError::illegal_argument(format!(
        "no write index is defined for alias [{alias}]. The write index may be explicitly disabled using is_write_index=false or the alias points to multiple indices without one being designated as a write index"
    ))
}

impl Metadata {
    /// Indices carrying an alias of this name.
    pub fn alias_indices(&self, alias: &str) -> Vec<(&str, &IndexEntry, &AliasMeta)> {
        self.indices
            .iter()
            .filter_map(|(n, e)| e.aliases.get(alias).map(|a| (n.as_str(), e, a)))
            .collect()
    }

    /// Whether an alias of this name exists.
    pub fn is_alias(&self, name: &str) -> bool {
        self.indices.values().any(|e| e.aliases.contains_key(name))
    }

    /// All alias names.
    pub fn alias_names(&self) -> std::collections::BTreeSet<String> {
        self.indices
            .values()
            .flat_map(|e| e.aliases.keys().cloned())
            .collect()
    }

    /// Where a write to `name` goes.
    pub fn write_target(&self, name: &str) -> WriteTarget {
        if let Some(e) = self.indices.get(name) {
            return WriteTarget::Index(e.index.clone(), None);
        }
        let targets = self.alias_indices(name);
        if targets.is_empty() {
            return WriteTarget::Missing;
        }
        if let Some((_, e, a)) = targets
            .iter()
            .find(|(_, _, a)| a.is_write_index == Some(true))
        {
            return WriteTarget::Index(e.index.clone(), a.index_routing.clone());
        }
        match targets.as_slice() {
            [(_, e, a)] if a.is_write_index != Some(false) => {
                WriteTarget::Index(e.index.clone(), a.index_routing.clone())
            }
            _ => WriteTarget::NoWriteIndex,
        }
    }

    /// Resolves a comma-separated index expression to concrete indices.
    pub fn resolve(&self, expr: &str, o: &ResolveOpts) -> EsResult<Vec<Resolved>> {
        let now = crate::names::now_millis();
        let parts: Vec<&str> = expr
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let mut acc: BTreeMap<String, Access> = BTreeMap::new();
        let add = |acc: &mut BTreeMap<String, Access>, name: &str, filter: Option<&Value>| match (
            acc.get_mut(name),
            filter,
        ) {
            (Some(Access::Unfiltered), _) => {}
            (Some(a), None) => *a = Access::Unfiltered,
            (Some(Access::Filtered(fs)), Some(f)) => fs.push(f.clone()),
            (None, None) => {
                acc.insert(name.to_string(), Access::Unfiltered);
            }
            (None, Some(f)) => {
                acc.insert(name.to_string(), Access::Filtered(vec![f.clone()]));
            }
        };
        let visible = |e: &IndexEntry, pattern: &str| -> bool {
            let state_ok = if e.index.is_closed() {
                o.expand_closed
            } else {
                o.expand_open
            };
            if !state_ok {
                return false;
            }
            if e.hidden && !o.expand_hidden && !pattern.starts_with('.') {
                return false;
            }
            true
        };
        let all = parts.is_empty() || parts == ["_all"] || parts == ["*"];
        if all {
            for (name, e) in &self.indices {
                if visible(e, "*") {
                    add(&mut acc, name, None);
                }
            }
        } else {
            let mut seen_wildcard = false;
            for raw in parts {
                if let Some(excl) = raw.strip_prefix('-') {
                    if seen_wildcard {
                        let excl = resolve_date_math_name(excl, now)?;
                        acc.retain(|name, _| !glob_match(&excl, name));
                        continue;
                    }
                }
                let p = resolve_date_math_name(raw, now)?;
                if p == "_all" {
                    for (name, e) in &self.indices {
                        if visible(e, "*") {
                            add(&mut acc, name, None);
                        }
                    }
                    continue;
                }
                if is_wildcard(&p) {
                    seen_wildcard = true;
                    let mut matched = false;
                    for (name, e) in &self.indices {
                        if glob_match(&p, name) && visible(e, &p) {
                            add(&mut acc, name, None);
                            matched = true;
                        }
                    }
                    if o.wildcards_match_aliases && o.expand_open {
                        for (name, e) in &self.indices {
                            for (alias, meta) in &e.aliases {
                                if glob_match(&p, alias)
                                    && (meta.is_hidden != Some(true) || o.expand_hidden)
                                {
                                    add(&mut acc, name, meta.filter.as_ref());
                                    matched = true;
                                }
                            }
                        }
                    }
                    if !matched && !o.allow_no_indices {
                        return Err(EsError::index_not_found(&p));
                    }
                    continue;
                }
                if self.indices.contains_key(&p) {
                    add(&mut acc, &p, None);
                    continue;
                }
                let targets = self.alias_indices(&p);
                if !targets.is_empty() {
                    if o.forbid_aliases {
                        if o.ignore_unavailable {
                            continue;
                        }
                        return Err(EsError::illegal_argument(format!(
                            "The provided expression [{p}] matches an alias, specify the corresponding concrete indices instead."
                        )));
                    }
                    for (name, _, meta) in targets {
                        add(&mut acc, name, meta.filter.as_ref());
                    }
                    continue;
                }
                if o.ignore_unavailable {
                    continue;
                }
                return Err(EsError::index_not_found(&p));
            }
        }
        if o.forbid_closed {
            let mut closed = Vec::new();
            for name in acc.keys() {
                if let Some(e) = self.indices.get(name).filter(|e| e.index.is_closed()) {
                    if !o.ignore_unavailable {
                        return Err(e.index.closed_error());
                    }
                    closed.push(name.clone());
                }
            }
            for name in closed {
                acc.remove(&name);
            }
        }
        if acc.is_empty() && !o.allow_no_indices {
            let shown = if expr.is_empty() { "_all" } else { expr };
            return Err(EsError::index_not_found(shown));
        }
        Ok(acc
            .into_iter()
            .filter_map(|(name, access)| {
                self.indices.get(&name).map(|e| Resolved {
                    index: e.index.clone(),
                    name,
                    access,
                })
            })
            .collect())
    }
}

/// Cluster-wide state.
#[derive(Debug)]
pub struct Cluster {
    /// Indices and aliases.
    pub meta: parking_lot::RwLock<Metadata>,
    /// `cluster_uuid`.
    pub uuid: String,
    /// `cluster_name`.
    pub name: String,
    /// Cluster settings (`PUT /_cluster/settings`).
    pub settings: parking_lot::RwLock<crate::cluster_settings::Store>,
}

impl Cluster {
    /// An empty cluster.
    pub fn new(name: &str) -> Cluster {
        Cluster {
            meta: parking_lot::RwLock::new(Metadata::default()),
            uuid: crate::util::random_uuid(),
            name: name.to_string(),
            settings: parking_lot::RwLock::new(crate::cluster_settings::Store::default()),
        }
    }
}
