//! Runs Elasticsearch's own REST YAML tests against the dev server started in-process, or
//! against a real cluster when `ES_URL` is set. Two suites: `../shared/es-rest-tests` (or
//! `ES_REST_TESTS_DIR`, manifest `conformance-skips.toml`) and `../shared/es-rest-tests-more`
//! (or `ES_REST_TESTS_MORE_DIR`, manifest `conformance-skips-more.toml`). A suite that is
//! absent (a plain clone) is skipped with one line. Sections a manifest lists under `skip` are
//! skipped with their reason; `known_failure` entries run and may fail; every other section
//! must pass.
//!
//! The language is described in the suite's `FRAMEWORK.asciidoc`; `api/*.json` maps each
//! `do:` action to an HTTP method and path.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value as J};
use serde_yaml::Value as Y;

// ---------------------------------------------------------------------------------------
// Locating the suite

fn suite_dir(suite: &Suite) -> PathBuf {
    if let Ok(d) = std::env::var(suite.env) {
        return PathBuf::from(d);
    }
    // <workspace>/dev/es-devserver -> <workspace>/../shared/<suite>
    Path::new(env!("CARGO_MANIFEST_DIR")).join(suite.default_rel)
}

// ---------------------------------------------------------------------------------------
// API specs

#[derive(Debug, Clone)]
struct PathSpec {
    path: String,
    methods: Vec<String>,
    parts: Vec<String>,
}

#[derive(Debug, Clone)]
struct ApiSpec {
    paths: Vec<PathSpec>,
    bulk_body: bool,
}

impl ApiSpec {
    fn part_names(&self) -> HashSet<String> {
        self.paths
            .iter()
            .flat_map(|p| p.parts.iter().cloned())
            .collect()
    }
}

fn placeholders(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + end].to_string());
        rest = &rest[start + end + 1..];
    }
    out
}

fn spec(paths: &[(&str, &[&str])]) -> ApiSpec {
    ApiSpec {
        paths: paths
            .iter()
            .map(|(p, m)| PathSpec {
                path: p.to_string(),
                methods: m.iter().map(|s| s.to_string()).collect(),
                parts: placeholders(p),
            })
            .collect(),
        bulk_body: false,
    }
}

fn load_specs(dir: &Path) -> HashMap<String, ApiSpec> {
    let mut specs = HashMap::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir.join("api"))
        .expect("api dir")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read spec");
        let v: J = serde_json::from_str(&text).expect("parse spec");
        let Some((name, body)) = v.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        let url = &body["url"];
        let mut paths = Vec::new();
        if let Some(arr) = url["paths"].as_array() {
            for entry in arr {
                match entry {
                    J::Object(o) => paths.push(PathSpec {
                        path: o["path"].as_str().unwrap_or_default().to_string(),
                        methods: o["methods"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|m| m.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        parts: o
                            .get("parts")
                            .and_then(|p| p.as_object())
                            .map(|m| m.keys().cloned().collect())
                            .unwrap_or_else(|| {
                                placeholders(o["path"].as_str().unwrap_or_default())
                            }),
                    }),
                    J::String(s) => paths.push(PathSpec {
                        path: s.clone(),
                        methods: body["methods"]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|m| m.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        parts: placeholders(s),
                    }),
                    _ => {}
                }
            }
        }
        let bulk_body = body["body"]["serialize"].as_str() == Some("bulk");
        specs.insert(name.clone(), ApiSpec { paths, bulk_body });
    }
    // The suite's README: these two specs are older ones with {type} in their paths.
    specs.insert(
        "create".into(),
        spec(&[("/{index}/_create/{id}", &["PUT", "POST"])]),
    );
    specs.insert(
        "search".into(),
        spec(&[
            ("/_search", &["GET", "POST"]),
            ("/{index}/_search", &["GET", "POST"]),
        ]),
    );
    // APIs used by the tests whose specs the suite does not ship.
    let builtin: Vec<(&str, ApiSpec)> = vec![
        (
            "indices.get_mapping",
            spec(&[("/_mapping", &["GET"]), ("/{index}/_mapping", &["GET"])]),
        ),
        (
            "indices.get_settings",
            spec(&[
                ("/_settings", &["GET"]),
                ("/{index}/_settings", &["GET"]),
                ("/{index}/_settings/{name}", &["GET"]),
                ("/_settings/{name}", &["GET"]),
            ]),
        ),
        (
            "indices.exists_alias",
            spec(&[
                ("/_alias/{name}", &["HEAD"]),
                ("/{index}/_alias/{name}", &["HEAD"]),
            ]),
        ),
        (
            "indices.stats",
            spec(&[("/_stats", &["GET"]), ("/{index}/_stats", &["GET"])]),
        ),
        ("capabilities", spec(&[("/_capabilities", &["GET"])])),
    ];
    for (name, s) in builtin {
        specs.entry(name.to_string()).or_insert(s);
    }
    specs
}

// ---------------------------------------------------------------------------------------
// YAML -> JSON

fn y2j(y: &Y) -> J {
    match y {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(*b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(J::Number)
                    .unwrap_or(J::Null)
            }
        }
        Y::String(s) => J::String(s.clone()),
        Y::Sequence(s) => J::Array(s.iter().map(y2j).collect()),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                out.insert(key, y2j(v));
            }
            J::Object(out)
        }
        Y::Tagged(t) => y2j(&t.value),
    }
}

// ---------------------------------------------------------------------------------------
// Skips manifest

#[derive(Debug, serde::Deserialize)]
struct Manifest {
    #[serde(default)]
    skip: Vec<SkipEntry>,
    /// Sections that run but are known to fail (a documented gap of the dev server): they
    /// count as failed in the pass percentage, do not fail the test, and must be removed
    /// once they pass.
    #[serde(default)]
    known_failure: Vec<SkipEntry>,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct SkipEntry {
    file: String,
    section: String,
    reason: String,
}

// ---------------------------------------------------------------------------------------
// Execution context

struct Ctx {
    client: reqwest::Client,
    base: String,
    specs: HashMap<String, ApiSpec>,
    stash: HashMap<String, J>,
    response: Option<Response>,
    version: (u64, u64, u64),
}

#[derive(Debug, Clone)]
struct Response {
    status: u16,
    body_text: String,
    body: J,
    warnings: Vec<String>,
}

const RUNNER_FEATURES: &[&str] = &[
    "headers",
    "allowed_warnings",
    "allowed_warnings_regex",
    "warnings",
    "warnings_regex",
    "contains",
    "transform_and_set",
    "stash_in_path",
    "stash_in_key",
    "embedded_stash_key",
    "arbitrary_key",
    "default_shards",
    "capabilities",
    "close_to",
    "is_after",
    "catch_unauthorized",
];

fn parse_version(s: &str) -> Option<(u64, u64, u64)> {
    let s = s.trim();
    let core = s.split(['-', '_']).next().unwrap_or(s);
    let mut it = core.split('.').map(|p| p.trim().parse::<u64>().ok());
    let a = it.next()??;
    let b = it.next().flatten().unwrap_or(0);
    let c = it.next().flatten().unwrap_or(0);
    Some((a, b, c))
}

fn version_in_ranges(ranges: &str, v: (u64, u64, u64)) -> bool {
    if ranges.trim() == "all" {
        return true;
    }
    for r in ranges.split(',') {
        let Some((lo, hi)) = r.split_once(" - ").or_else(|| {
            r.split_once('-')
                .filter(|_| r.trim().starts_with('-') || r.trim().ends_with('-'))
        }) else {
            continue;
        };
        let lo = parse_version(lo).unwrap_or((0, 0, 0));
        let hi = parse_version(hi).unwrap_or((u64::MAX, u64::MAX, u64::MAX));
        if lo <= v && v <= hi {
            return true;
        }
    }
    false
}

fn as_list(v: &J) -> Vec<String> {
    match v {
        J::String(s) => vec![s.clone()],
        J::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

fn cluster_feature_present(f: &str, v: (u64, u64, u64)) -> bool {
    if let Some(ver) = f.strip_prefix("gte_v") {
        return parse_version(ver).is_some_and(|want| v >= want);
    }
    // The features the suite asks for all exist in 8.x (bulk_auto_id, bulk_require_alias,
    // indices_alias_date_math, ...).
    true
}

enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

fn percent_encode_part(s: &str, keep: &[u8]) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn param_string(v: &J) -> String {
    match v {
        J::String(s) => s.clone(),
        J::Array(a) => a.iter().map(param_string).collect::<Vec<_>>().join(","),
        J::Null => String::new(),
        other => other.to_string(),
    }
}

fn is_true(v: Option<&J>) -> bool {
    match v {
        None | Some(J::Null) => false,
        Some(J::Bool(b)) => *b,
        Some(J::String(s)) => !(s.is_empty() || s.eq_ignore_ascii_case("false") || s == "0"),
        Some(J::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => true,
    }
}

fn num(v: &J) -> Option<f64> {
    match v {
        J::Number(n) => n.as_f64(),
        J::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn values_equal(a: &J, b: &J) -> bool {
    match (a, b) {
        (J::Number(x), J::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(i), Some(j)) => i == j,
                _ => x.as_f64() == y.as_f64(),
            },
        },
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_equal(p, q))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

fn regex_of(s: &str) -> Option<String> {
    let t = s.trim();
    if t.len() >= 2 && t.starts_with('/') && t.ends_with('/') {
        Some(t[1..t.len() - 1].replace("\\/", "/"))
    } else {
        None
    }
}

fn split_path(path: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'.') {
            cur.push('.');
            chars.next();
        } else if c == '.' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

impl Ctx {
    fn subst_str(&self, s: &str) -> J {
        if let Some(key) = s.strip_prefix('$') {
            if !key.starts_with('{') {
                if key == "body" {
                    if let Some(r) = &self.response {
                        return J::String(r.body_text.clone());
                    }
                }
                if let Some(v) = self.stash.get(key) {
                    return v.clone();
                }
            }
        }
        if s.contains("${") {
            let mut out = String::new();
            let mut rest = s;
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                match after.find('}') {
                    Some(end) => {
                        let key = &after[..end];
                        match self.stash.get(key) {
                            Some(v) => out.push_str(&param_string(v)),
                            None => out.push_str(&rest[start..start + 2 + end + 1]),
                        }
                        rest = &after[end + 1..];
                    }
                    None => {
                        out.push_str(&rest[start..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            return J::String(out);
        }
        J::String(s.to_string())
    }

    fn subst(&self, v: &J) -> J {
        match v {
            J::String(s) => self.subst_str(s),
            J::Array(a) => J::Array(a.iter().map(|x| self.subst(x)).collect()),
            J::Object(m) => {
                let mut out = Map::new();
                for (k, val) in m {
                    let key = match self.subst_str(k) {
                        J::String(s) => s,
                        other => param_string(&other),
                    };
                    out.insert(key, self.subst(val));
                }
                J::Object(out)
            }
            other => other.clone(),
        }
    }

    /// Looks up a dotted path in the last response.
    fn lookup(&self, path: &str) -> Option<J> {
        let r = self.response.as_ref()?;
        if path == "$body" {
            return Some(r.body.clone());
        }
        let mut cur = r.body.clone();
        if path.is_empty() {
            return Some(cur);
        }
        for raw in split_path(path) {
            let comp = match self.subst_str(&raw) {
                J::String(s) => s,
                other => param_string(&other),
            };
            cur = match cur {
                J::Object(m) => {
                    if comp == "_arbitrary_key_" {
                        J::String(m.keys().next()?.clone())
                    } else {
                        m.get(&comp)?.clone()
                    }
                }
                J::Array(a) => a.get(comp.parse::<usize>().ok()?)?.clone(),
                _ => return None,
            };
        }
        Some(cur)
    }

    async fn reset_cluster(&self) -> Result<(), String> {
        let url = format!("{}/_all?expand_wildcards=all", self.base);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: J = resp.json().await.map_err(|e| e.to_string())?;
        if let J::Object(m) = body {
            let names: Vec<String> = m.keys().filter(|k| !k.starts_with('.')).cloned().collect();
            for chunk in names.chunks(50) {
                let enc: Vec<String> = chunk.iter().map(|n| percent_encode_part(n, b"")).collect();
                let url = format!("{}/{}?expand_wildcards=all", self.base, enc.join(","));
                let r = self
                    .client
                    .delete(&url)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("reset: DELETE {url} -> {}", r.status()));
                }
            }
        }
        Ok(())
    }

    /// `Some(reason)` when no path of `api` can be built from the parts in `args`.
    fn missing_part(&self, api: &str, args: &Map<String, J>) -> Option<String> {
        let Some(spec) = self.specs.get(api) else {
            return Some(format!("no spec for api [{api}]"));
        };
        let fits = spec
            .paths
            .iter()
            .any(|p| p.parts.iter().all(|x| args.contains_key(x)));
        (!fits).then(|| format!("no path of [{api}] fits the given parts"))
    }

    async fn call(
        &mut self,
        api: &str,
        args: &Map<String, J>,
        headers: &Map<String, J>,
    ) -> Result<Response, String> {
        let spec = self
            .specs
            .get(api)
            .cloned()
            .ok_or_else(|| format!("no spec for api [{api}]"))?;
        let part_names = spec.part_names();
        let mut parts: BTreeMap<String, String> = BTreeMap::new();
        let mut query: Vec<(String, String)> = Vec::new();
        let mut body: Option<J> = None;
        for (k, v) in args {
            let v = self.subst(v);
            match k.as_str() {
                "body" => body = Some(v),
                "ignore" => {}
                _ if part_names.contains(k) => {
                    parts.insert(k.clone(), param_string(&v));
                }
                _ => query.push((k.clone(), param_string(&v))),
            }
        }
        // The path with the most parts, all of them provided.
        let chosen = spec
            .paths
            .iter()
            .filter(|p| p.parts.iter().all(|x| parts.contains_key(x)))
            .max_by_key(|p| p.parts.len())
            .ok_or_else(|| {
                format!(
                    "no path of [{api}] fits parts {:?}",
                    parts.keys().collect::<Vec<_>>()
                )
            })?;
        let mut path = chosen.path.clone();
        for (k, v) in &parts {
            if chosen.parts.contains(k) {
                path = path.replace(&format!("{{{k}}}"), &percent_encode_part(v, b",*"));
            } else {
                query.push((k.clone(), v.clone()));
            }
        }
        let method = if body.is_some()
            && chosen.methods.iter().any(|m| m == "POST")
            && !chosen.methods.iter().any(|m| m == "PUT")
        {
            "POST".to_string()
        } else {
            chosen
                .methods
                .first()
                .cloned()
                .unwrap_or_else(|| "GET".into())
        };
        let mut url = format!("{}{}", self.base, path);
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        percent_encode_part(k, b""),
                        percent_encode_part(v, b",*")
                    )
                })
                .collect();
            url.push('?');
            url.push_str(&q.join("&"));
        }
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut req = self.client.request(m.clone(), &url);
        let mut content_type: Option<String> = None;
        for (k, v) in headers {
            let v = param_string(&self.subst(v));
            if k.eq_ignore_ascii_case("content-type") {
                content_type = Some(v.clone());
            }
            req = req.header(k.as_str(), v);
        }
        if let Some(b) = body {
            let (text, ct) = if spec.bulk_body {
                let text = match &b {
                    J::String(s) => {
                        if s.ends_with('\n') {
                            s.clone()
                        } else {
                            format!("{s}\n")
                        }
                    }
                    J::Array(items) => {
                        let mut t = String::new();
                        for i in items {
                            match i {
                                J::String(s) => t.push_str(s),
                                other => t.push_str(&other.to_string()),
                            }
                            t.push('\n');
                        }
                        t
                    }
                    other => format!("{other}\n"),
                };
                (text, "application/x-ndjson")
            } else {
                let text = match &b {
                    J::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (text, "application/json")
            };
            if content_type.is_none() {
                req = req.header("content-type", ct);
            }
            req = req.body(text);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let warnings: Vec<String> = resp
            .headers()
            .get_all("warning")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|w| match (w.find('"'), w.rfind('"')) {
                (Some(a), Some(b)) if b > a => w[a + 1..b].replace("\\\"", "\""),
                _ => w.to_string(),
            })
            .collect();
        let is_json = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.contains("json"));
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let body = if m == reqwest::Method::HEAD {
            J::Bool(status == 200)
        } else if is_json {
            serde_json::from_str(&text).unwrap_or(J::String(text.clone()))
        } else {
            J::String(text.clone())
        };
        Ok(Response {
            status,
            body_text: text,
            body,
            warnings,
        })
    }

    /// Evaluates `skip`/`requires`; `Some(reason)` to skip.
    async fn should_skip(&self, kind: &str, v: &J) -> Option<String> {
        let m = v.as_object()?;
        let reason = m
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or("")
            .to_string();
        if kind == "skip" {
            if let Some(ver) = m.get("version").and_then(|x| x.as_str()) {
                if version_in_ranges(ver, self.version) {
                    return Some(format!("version {ver}: {reason}"));
                }
            }
            for f in as_list(m.get("features").unwrap_or(&J::Null)) {
                if !RUNNER_FEATURES.contains(&f.as_str()) {
                    return Some(format!("runner feature [{f}] not supported"));
                }
            }
            for f in as_list(m.get("cluster_features").unwrap_or(&J::Null)) {
                if cluster_feature_present(&f, self.version) {
                    return Some(format!("cluster feature [{f}] present: {reason}"));
                }
            }
            if m.contains_key("awaits_fix") {
                return Some(format!("awaits fix: {reason}"));
            }
            if let Some(J::Array(issues)) = m.get("known_issues") {
                for i in issues {
                    let f = i["cluster_feature"].as_str().unwrap_or("");
                    let fixed = i["fixed_by"].as_str().unwrap_or("");
                    if cluster_feature_present(f, self.version)
                        && !cluster_feature_present(fixed, self.version)
                    {
                        return Some(format!("known issue: {reason}"));
                    }
                }
            }
        } else {
            for f in as_list(m.get("test_runner_features").unwrap_or(&J::Null)) {
                if !RUNNER_FEATURES.contains(&f.as_str()) {
                    return Some(format!("runner feature [{f}] not supported"));
                }
            }
            for f in as_list(m.get("cluster_features").unwrap_or(&J::Null)) {
                if !cluster_feature_present(&f, self.version) {
                    return Some(format!("cluster feature [{f}] missing: {reason}"));
                }
            }
            if let Some(J::Array(caps)) = m.get("capabilities") {
                for c in caps {
                    let method = c["method"].as_str().unwrap_or("GET");
                    let path = c["path"].as_str().unwrap_or("/");
                    let mut url = format!(
                        "{}/_capabilities?method={}&path={}",
                        self.base,
                        method,
                        percent_encode_part(path, b"")
                    );
                    let capl = as_list(&c["capabilities"]);
                    if !capl.is_empty() {
                        url.push_str(&format!("&capabilities={}", capl.join(",")));
                    }
                    let params = as_list(&c["parameters"]);
                    if !params.is_empty() {
                        url.push_str(&format!("&parameters={}", params.join(",")));
                    }
                    let supported = match self.client.get(&url).send().await {
                        Ok(r) => r
                            .json::<J>()
                            .await
                            .ok()
                            .and_then(|b| b["supported"].as_bool())
                            .unwrap_or(false),
                        Err(_) => false,
                    };
                    if !supported {
                        return Some(format!(
                            "capabilities {capl:?} of {method} {path} not supported: {reason}"
                        ));
                    }
                }
            }
        }
        None
    }

    async fn run_do(&mut self, d: &Map<String, J>) -> Result<(), String> {
        let mut catch: Option<String> = None;
        let mut headers = Map::new();
        let mut warnings: Vec<String> = Vec::new();
        let mut warnings_regex: Vec<String> = Vec::new();
        let mut allowed: Vec<String> = Vec::new();
        let mut allowed_regex: Vec<String> = Vec::new();
        let mut api_call: Option<(String, Map<String, J>)> = None;
        for (k, v) in d {
            match k.as_str() {
                "catch" => catch = v.as_str().map(str::to_string),
                "headers" => headers = v.as_object().cloned().unwrap_or_default(),
                "warnings" => warnings = as_list(v),
                "warnings_regex" => warnings_regex = as_list(v),
                "allowed_warnings" => allowed = as_list(v),
                "allowed_warnings_regex" => allowed_regex = as_list(v),
                "node_selector" => {}
                api => {
                    api_call = Some((api.to_string(), v.as_object().cloned().unwrap_or_default()))
                }
            }
        }
        let (api, args) = api_call.ok_or("do without an api")?;
        let ignore: Vec<u16> = match args.get("ignore") {
            Some(J::Number(n)) => n.as_u64().map(|x| vec![x as u16]).unwrap_or_default(),
            Some(J::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_u64().map(|x| x as u16))
                .collect(),
            _ => vec![],
        };
        if catch.as_deref() == Some("param") {
            // `catch: param`: the client itself refuses the call, as the Java runner does
            // when a required path part is missing; nothing is sent.
            return match self.missing_part(&api, &args) {
                Some(_) => Ok(()),
                None => Err(format!(
                    "{api}: expected a parameter error, but every required part is present"
                )),
            };
        }
        let resp = self.call(&api, &args, &headers).await?;
        let is_head = resp.body.is_boolean();
        let status = resp.status;
        let error = status >= 400 && !(is_head && status == 404);
        // Warnings.
        for w in &warnings {
            if !resp.warnings.contains(w) {
                return Err(format!(
                    "{api}: expected warning [{w}] not found in {:?}",
                    resp.warnings
                ));
            }
        }
        for w in &warnings_regex {
            let re = regex::Regex::new(w).map_err(|e| e.to_string())?;
            if !resp.warnings.iter().any(|x| re.is_match(x)) {
                return Err(format!("{api}: expected warning matching [{w}] not found"));
            }
        }
        for got in &resp.warnings {
            let ok = warnings.contains(got)
                || allowed.contains(got)
                || warnings_regex
                    .iter()
                    .chain(allowed_regex.iter())
                    .any(|r| regex::Regex::new(r).is_ok_and(|re| re.is_match(got)));
            if !ok {
                return Err(format!("{api}: unexpected warning [{got}]"));
            }
        }
        self.stash.insert("body".into(), resp.body.clone());
        self.response = Some(resp.clone());
        match catch {
            None => {
                if error && !ignore.contains(&status) {
                    return Err(format!(
                        "{api}: unexpected error status {status}: {}",
                        resp.body_text
                    ));
                }
            }
            Some(c) => {
                if !error {
                    return Err(format!(
                        "{api}: expected error [{c}] but got {status}: {}",
                        resp.body_text
                    ));
                }
                let ok = match c.as_str() {
                    "missing" => status == 404,
                    "conflict" => status == 409,
                    "bad_request" => status == 400,
                    "forbidden" => status == 403,
                    "unauthorized" => status == 401,
                    "request_timeout" => status == 408,
                    "unavailable" => status == 503,
                    "request" => status >= 400 && ![400, 401, 403, 404, 408, 409].contains(&status),
                    "param" => false,
                    other => match regex_of(other) {
                        Some(re) => regex::Regex::new(&re)
                            .map_err(|e| e.to_string())?
                            .is_match(&resp.body_text),
                        None => false,
                    },
                };
                if !ok {
                    return Err(format!(
                        "{api}: expected [{c}] but got {status}: {}",
                        resp.body_text
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_match(&self, path: &str, expected: &J) -> Result<(), String> {
        if split_path(path).last().is_some_and(|p| p == "_type") {
            // Suite rule 1: 8.x responses have no `_type`.
            return Ok(());
        }
        let expected = self.subst(expected);
        let actual = self.lookup(path);
        if let J::String(s) = &expected {
            if let Some(re) = regex_of(s) {
                let text = match (&actual, path) {
                    (_, "$body") => self
                        .response
                        .as_ref()
                        .map(|r| r.body_text.clone())
                        .unwrap_or_default(),
                    (Some(J::String(a)), _) => a.clone(),
                    (Some(other), _) => other.to_string(),
                    (None, _) => return Err(format!("match {path}: no value")),
                };
                let re = regex::Regex::new(&format!("(?x){re}")).map_err(|e| e.to_string())?;
                return if re.is_match(&text) {
                    Ok(())
                } else {
                    Err(format!("match {path}: [{text}] does not match /{s}/"))
                };
            }
        }
        match actual {
            Some(a) if values_equal(&a, &expected) => Ok(()),
            None if expected.is_null() => Ok(()),
            other => Err(format!(
                "match {path}: expected {expected} but got {}",
                other.map_or("nothing".to_string(), |v| v.to_string())
            )),
        }
    }

    async fn run_step(&mut self, step: &J) -> Result<(), String> {
        let m = step.as_object().ok_or("step is not a map")?;
        let Some((kind, v)) = m.iter().next() else {
            return Ok(());
        };
        match kind.as_str() {
            "do" => self.run_do(v.as_object().ok_or("do is not a map")?).await,
            "skip" | "requires" => Ok(()),
            "set" => {
                for (path, name) in v.as_object().ok_or("set is not a map")? {
                    let val = self
                        .lookup(path)
                        .ok_or_else(|| format!("set: no value at {path}"))?;
                    self.stash
                        .insert(name.as_str().unwrap_or_default().to_string(), val);
                }
                Ok(())
            }
            "transform_and_set" => {
                for (name, expr) in v.as_object().ok_or("transform_and_set is not a map")? {
                    let e = expr.as_str().unwrap_or_default();
                    let val = if let Some(args) = e
                        .strip_prefix("#base64EncodeCredentials(")
                        .and_then(|s| s.strip_suffix(')'))
                    {
                        let (u, p) = args.split_once(',').unwrap_or((args, ""));
                        let u = self
                            .lookup(u.trim())
                            .map(|v| param_string(&v))
                            .unwrap_or_default();
                        let p = self
                            .lookup(p.trim())
                            .map(|v| param_string(&v))
                            .unwrap_or_default();
                        J::String(base64(format!("{u}:{p}").as_bytes()))
                    } else {
                        J::String(e.to_string())
                    };
                    self.stash.insert(name.clone(), val);
                }
                Ok(())
            }
            "match" => {
                for (path, expected) in v.as_object().ok_or("match is not a map")? {
                    let path = match self.subst_str(path) {
                        J::String(s)
                            if path.starts_with('$') && path != "$body" && !s.starts_with('$') =>
                        {
                            path.clone()
                        }
                        _ => path.clone(),
                    };
                    self.check_match(&path, expected)?;
                }
                Ok(())
            }
            "is_true" | "is_false" => {
                let path = v.as_str().unwrap_or_default();
                let val = self.lookup(path);
                let t = is_true(val.as_ref());
                if (kind == "is_true") == t {
                    Ok(())
                } else {
                    Err(format!(
                        "{kind} {path}: got {}",
                        val.map_or("nothing".into(), |v| v.to_string())
                    ))
                }
            }
            "exists" => {
                let path = v.as_str().unwrap_or_default();
                match self.lookup(path) {
                    Some(J::Null) | None => Err(format!("exists {path}: missing")),
                    Some(_) => Ok(()),
                }
            }
            "length" => {
                for (path, n) in v.as_object().ok_or("length is not a map")? {
                    let want = num(&self.subst(n)).unwrap_or(-1.0) as usize;
                    let got = match self.lookup(path) {
                        Some(J::Array(a)) => a.len(),
                        Some(J::Object(o)) => o.len(),
                        Some(J::String(s)) => s.chars().count(),
                        other => return Err(format!("length {path}: not measurable: {other:?}")),
                    };
                    if got != want {
                        return Err(format!("length {path}: expected {want} got {got}"));
                    }
                }
                Ok(())
            }
            "gt" | "gte" | "lt" | "lte" => {
                for (path, n) in v.as_object().ok_or("comparison is not a map")? {
                    let want = self.subst(n);
                    let got = self
                        .lookup(path)
                        .ok_or_else(|| format!("{kind} {path}: no value"))?;
                    let ord = match (num(&got), num(&want)) {
                        (Some(a), Some(b)) => a.partial_cmp(&b),
                        _ => param_string(&got).partial_cmp(&param_string(&want)),
                    }
                    .ok_or_else(|| format!("{kind} {path}: incomparable"))?;
                    let ok = match kind.as_str() {
                        "gt" => ord.is_gt(),
                        "gte" => ord.is_ge(),
                        "lt" => ord.is_lt(),
                        _ => ord.is_le(),
                    };
                    if !ok {
                        return Err(format!("{kind} {path}: {got} vs {want}"));
                    }
                }
                Ok(())
            }
            "contains" => {
                for (path, want) in v.as_object().ok_or("contains is not a map")? {
                    let want = self.subst(want);
                    let got = self
                        .lookup(path)
                        .ok_or_else(|| format!("contains {path}: no value"))?;
                    let ok = match (&got, &want) {
                        (J::String(s), J::String(w)) => s.contains(w.as_str()),
                        (J::Array(a), J::Object(w)) => a.iter().any(|item| {
                            w.iter()
                                .all(|(k, val)| item.get(k).is_some_and(|x| values_equal(x, val)))
                        }),
                        (J::Array(a), w) => a.iter().any(|item| values_equal(item, w)),
                        _ => false,
                    };
                    if !ok {
                        return Err(format!("contains {path}: {got} does not contain {want}"));
                    }
                }
                Ok(())
            }
            "close_to" => {
                for (path, spec) in v.as_object().ok_or("close_to is not a map")? {
                    let got = self
                        .lookup(path)
                        .and_then(|g| num(&g))
                        .ok_or_else(|| format!("close_to {path}: no number"))?;
                    let value = num(&spec["value"]).unwrap_or(0.0);
                    let err = num(&spec["error"]).unwrap_or(0.0);
                    if (got - value).abs() > err {
                        return Err(format!(
                            "close_to {path}: {got} not within {err} of {value}"
                        ));
                    }
                }
                Ok(())
            }
            "is_after" => Ok(()),
            other => Err(format!("unsupported step [{other}]")),
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Test files

struct TestFile {
    rel: String,
    setup: Vec<J>,
    teardown: Vec<J>,
    sections: Vec<(String, Vec<J>)>,
}

fn load_tests(dir: &Path) -> Vec<TestFile> {
    let mut files = Vec::new();
    let root = dir.join("test");
    let mut apis: Vec<_> = std::fs::read_dir(&root)
        .expect("test dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    apis.sort();
    for api_dir in apis {
        let mut ymls: Vec<_> = std::fs::read_dir(&api_dir)
            .expect("api test dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        ymls.sort();
        for f in ymls {
            if f.extension().and_then(|x| x.to_str()) != Some("yml")
                && f.extension().and_then(|x| x.to_str()) != Some("yaml")
            {
                continue;
            }
            let rel = f
                .strip_prefix(&root)
                .unwrap_or(&f)
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&f).expect("read yml");
            let mut tf = TestFile {
                rel,
                setup: vec![],
                teardown: vec![],
                sections: vec![],
            };
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let y = match <Y as serde::Deserialize>::deserialize(doc) {
                    Ok(y) => y,
                    Err(e) => panic!("{}: invalid YAML: {e}", tf.rel),
                };
                let J::Object(m) = y2j(&y) else { continue };
                for (name, steps) in m {
                    let steps = match steps {
                        J::Array(a) => a,
                        _ => vec![],
                    };
                    match name.as_str() {
                        "setup" => tf.setup = steps,
                        "teardown" => tf.teardown = steps,
                        _ => tf.sections.push((name, steps)),
                    }
                }
            }
            files.push(tf);
        }
    }
    files
}

async fn run_section(ctx: &mut Ctx, file: &TestFile, steps: &[J]) -> Outcome {
    if let Err(e) = ctx.reset_cluster().await {
        return Outcome::Fail(format!("cluster reset failed: {e}"));
    }
    ctx.stash.clear();
    ctx.response = None;
    for step in file
        .setup
        .iter()
        .chain(file.teardown.iter())
        .chain(steps.iter())
    {
        if let Some((kind, v)) = step.as_object().and_then(|m| m.iter().next()) {
            if kind == "skip" || kind == "requires" {
                if let Some(reason) = ctx.should_skip(kind, v).await {
                    return Outcome::Skip(reason);
                }
            }
        }
    }
    for step in &file.setup {
        if let Err(e) = ctx.run_step(step).await {
            return Outcome::Fail(format!("setup: {e}"));
        }
    }
    ctx.stash.clear();
    ctx.response = None;
    let mut result = Outcome::Pass;
    for (i, step) in steps.iter().enumerate() {
        if let Err(e) = ctx.run_step(step).await {
            result = Outcome::Fail(format!("step {i}: {e}"));
            break;
        }
    }
    for step in &file.teardown {
        if let Err(e) = ctx.run_step(step).await {
            if matches!(result, Outcome::Pass) {
                result = Outcome::Fail(format!("teardown: {e}"));
            }
        }
    }
    result
}

/// One official suite: where it lives by default, its override variable, its manifest.
struct Suite {
    label: &'static str,
    env: &'static str,
    default_rel: &'static str,
    manifest: &'static str,
}

const FIRST: Suite = Suite {
    label: "es-rest-tests",
    env: "ES_REST_TESTS_DIR",
    default_rel: "../../../shared/es-rest-tests",
    manifest: "tests/conformance-skips.toml",
};

const MORE: Suite = Suite {
    label: "es-rest-tests-more",
    env: "ES_REST_TESTS_MORE_DIR",
    default_rel: "../../../shared/es-rest-tests-more",
    manifest: "tests/conformance-skips-more.toml",
};

#[test]
fn rest_conformance() {
    run_suite(&FIRST);
}

#[test]
fn rest_conformance_more() {
    run_suite(&MORE);
}

fn run_suite(suite: &Suite) {
    let dir = suite_dir(suite);
    if !dir.join("test").is_dir() {
        // A plain clone has no ../shared: the official suite is not part of this repository.
        println!(
            "conformance: official suite {} absent at {} (set {}); test skipped",
            suite.label,
            dir.display(),
            suite.env
        );
        return;
    }
    let manifest_text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(suite.manifest))
            .expect("manifest");
    let manifest: Manifest = toml::from_str(&manifest_text).expect("valid manifest");
    let specs = load_specs(&dir);
    let mut files = load_tests(&dir);
    // `ES_REST_TESTS_ONLY=<substring>[,<substring>...]` runs only the files whose path
    // contains one of them (for working on a few sections); the manifest checks that need
    // the whole suite are then left out.
    let only: Vec<String> = std::env::var("ES_REST_TESTS_ONLY")
        .ok()
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    if !only.is_empty() {
        files.retain(|f| only.iter().any(|o| f.rel.contains(o.as_str())));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (base, server) = match std::env::var("ES_URL") {
            Ok(u) if !u.is_empty() => (u.trim_end_matches('/').to_string(), None),
            _ => {
                let s = es_devserver::start(es_devserver::Config::default())
                    .await
                    .expect("start dev server");
                (s.url().to_string(), Some(s))
            }
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .expect("client");
        let info: J = client
            .get(&base)
            .send()
            .await
            .expect("info")
            .json()
            .await
            .expect("info json");
        let version = parse_version(info["version"]["number"].as_str().unwrap_or("8.0.0"))
            .unwrap_or((8, 0, 0));
        let mut ctx = Ctx {
            client,
            base: base.clone(),
            specs,
            stash: HashMap::new(),
            response: None,
            version,
        };
        let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
        let mut failures = Vec::new();
        let mut known_failed = Vec::new();
        let mut now_passing = Vec::new();
        let mut skip_report = Vec::new();
        for file in &files {
            for (name, steps) in &file.sections {
                let matches = |e: &SkipEntry| {
                    e.file == file.rel && (e.section == "*" || &e.section == name)
                };
                if let Some(e) = manifest.skip.iter().find(|e| matches(e)) {
                    skipped += 1;
                    skip_report.push(format!("{} :: {} -- {}", file.rel, name, e.reason));
                    continue;
                }
                let known = manifest.known_failure.iter().find(|e| matches(e));
                match run_section(&mut ctx, file, steps).await {
                    Outcome::Pass => {
                        passed += 1;
                        if known.is_some() {
                            now_passing.push(format!("{} :: {}", file.rel, name));
                        }
                    }
                    Outcome::Skip(reason) => {
                        skipped += 1;
                        skip_report.push(format!(
                            "{} :: {} -- (framework) {}",
                            file.rel, name, reason
                        ));
                    }
                    Outcome::Fail(msg) => {
                        failed += 1;
                        match known {
                            Some(e) => known_failed.push(format!(
                                "{} :: {} -- {}\n    {}",
                                file.rel, name, e.reason, msg
                            )),
                            None => {
                                failures.push(format!("{} :: {}\n    {}", file.rel, name, msg))
                            }
                        }
                    }
                }
            }
        }
        let _ = ctx.reset_cluster().await;
        if let Some(s) = server {
            s.shutdown().await;
        }
        let known: HashSet<(String, String)> = files
            .iter()
            .flat_map(|f| {
                f.sections
                    .iter()
                    .map(move |(n, _)| (f.rel.clone(), n.clone()))
            })
            .collect();
        let stale: Vec<&SkipEntry> = manifest
            .skip
            .iter()
            .chain(manifest.known_failure.iter())
            .filter(|_| only.is_empty())
            .filter(|e| {
                if e.section == "*" {
                    !files.iter().any(|f| f.rel == e.file)
                } else {
                    !known.contains(&(e.file.clone(), e.section.clone()))
                }
            })
            .collect();
        println!("REST conformance ({}) against {base}", suite.label);
        for s in &skip_report {
            println!("  skipped: {s}");
        }
        for f in &known_failed {
            println!("  known failure: {f}");
        }
        for f in &failures {
            println!("  FAILED: {f}");
        }
        for s in &stale {
            println!("  stale manifest entry: {} :: {}", s.file, s.section);
        }
        let in_scope = passed + failed;
        let pct = if in_scope == 0 {
            100.0
        } else {
            100.0 * passed as f64 / in_scope as f64
        };
        println!(
            "conformance ({}): {passed} passed, {failed} failed ({} known), {skipped} skipped; {pct:.1}% of in-scope sections pass",
            suite.label,
            known_failed.len()
        );
        assert!(
            stale.is_empty(),
            "{} lists sections that do not exist",
            suite.manifest
        );
        assert!(
            now_passing.is_empty(),
            "sections listed as known failures in {} now pass; remove them:\n{}",
            suite.manifest,
            now_passing.join("\n")
        );
        assert!(
            failures.is_empty(),
            "{} conformance section(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}
