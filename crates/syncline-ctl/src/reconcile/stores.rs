//! Reading the derived stores: Elasticsearch by point-in-time walk of the concrete index
//! (tombstones included), Redis by pipelined reads of the version guards.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use syncline_cache::KeyLayout;

use super::spill::{Payload, Sorter};

/// The tombstone marker the indexer writes in `tombstone` delete mode.
const TOMBSTONE_FIELD: &str = "_syncline_deleted";

/// Whether a hit or `_mget` doc (with `_source` limited to [`TOMBSTONE_FIELD`]) is a
/// tombstone.
fn is_tombstone(doc: &Value) -> bool {
    doc.get("_source")
        .and_then(|s| s.get(TOMBSTONE_FIELD))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Documents per search page of the walk: Elasticsearch's default
/// `index.max_result_window`, the largest page an index allows unless told otherwise.
/// Every page is a round trip and a search on the server, so fewer is faster.
const PAGE: usize = 10_000;

/// One document's state in Elasticsearch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EsDoc {
    /// The external version.
    pub version: i64,
    /// A tombstone (the entity is deleted in the index).
    pub tombstone: bool,
}

impl Payload for EsDoc {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        out.push(u8::from(self.tombstone));
    }
    fn decode(buf: &[u8]) -> Option<Self> {
        Some(EsDoc {
            version: i64::from_le_bytes(buf.get(..8)?.try_into().ok()?),
            tombstone: *buf.get(8)? == 1,
        })
    }
}

/// `url` without its password, for messages.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// An Elasticsearch cluster.
pub struct EsStore {
    http: reqwest::Client,
    base: String,
    user: Option<(String, Option<String>)>,
    api_key: Option<String>,
    redacted: String,
}

impl EsStore {
    /// A client for `url` (`user:password@` in it is used as basic auth), or an API key.
    pub fn new(url: &str, api_key: Option<String>) -> anyhow::Result<EsStore> {
        let redacted = redact_url(url);
        let mut u = url::Url::parse(url).map_err(|e| anyhow!("--es-url {redacted}: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            bail!("--es-url {redacted}: the scheme must be http or https");
        }
        let user = if u.username().is_empty() {
            None
        } else {
            let name = percent_decode(u.username());
            let pw = u.password().map(percent_decode);
            Some((name, pw))
        };
        let _ = u.set_username("");
        let _ = u.set_password(None);
        let base = u.as_str().trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("HTTP client")?;
        Ok(EsStore {
            http,
            base,
            user,
            api_key,
            redacted,
        })
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = &self.api_key {
            r = r.header("authorization", format!("ApiKey {k}"));
        } else if let Some((u, p)) = &self.user {
            r = r.basic_auth(u, p.as_ref());
        }
        r
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut r = self.req(method, path);
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r
            .send()
            .await
            .map_err(|e| anyhow!("Elasticsearch at {}: {}", self.redacted, e.without_url()))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow!("Elasticsearch at {}: {}", self.redacted, e.without_url()))?;
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// The concrete index behind `alias` (its write index when it has several), or `None`
    /// when neither an alias nor an index of that name exists.
    pub async fn concrete_index(&self, alias: &str) -> anyhow::Result<Option<String>> {
        let (s, b) = self
            .call(reqwest::Method::GET, &format!("/_alias/{alias}"), None)
            .await?;
        match s {
            200 => {
                let Some(m) = b.as_object() else {
                    bail!("GET /_alias/{alias}: unexpected answer {b}");
                };
                if m.len() == 1 {
                    return Ok(m.keys().next().cloned());
                }
                let write = m.iter().find(|(_, v)| {
                    v.get("aliases")
                        .and_then(|a| a.get(alias))
                        .and_then(|a| a.get("is_write_index"))
                        .and_then(Value::as_bool)
                        == Some(true)
                });
                match write {
                    Some((k, _)) => Ok(Some(k.clone())),
                    None => bail!(
                        "alias {alias} points at {} indexes and none is its write index",
                        m.len()
                    ),
                }
            }
            404 => {
                let (s, _) = self
                    .call(reqwest::Method::HEAD, &format!("/{alias}"), None)
                    .await?;
                Ok((s == 200).then(|| alias.to_owned()))
            }
            401 | 403 => bail!(
                "Elasticsearch at {} refused the credentials ({s})",
                self.redacted
            ),
            _ => bail!("GET /_alias/{alias} at {}: {s} {b}", self.redacted),
        }
    }

    /// Every document of `index`, tombstones included, through a point in time and
    /// `search_after` on `_shard_doc` (a consistent view, without deep paging).
    pub async fn walk(
        &self,
        index: &str,
        mut each: impl FnMut(String, EsDoc),
    ) -> anyhow::Result<u64> {
        let (s, b) = self
            .call(
                reqwest::Method::POST,
                &format!("/{index}/_pit?keep_alive=2m"),
                None,
            )
            .await?;
        let Some(mut pit) = b
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|_| s == 200)
        else {
            bail!("opening a point in time on {index}: {s} {b}");
        };
        let mut after: Option<Value> = None;
        let mut n = 0u64;
        let result = async {
            loop {
                let mut body = json!({
                    "size": PAGE,
                    "pit": {"id": pit, "keep_alive": "2m"},
                    "sort": [{"_shard_doc": "asc"}],
                    "version": true,
                    "track_total_hits": false,
                    "_source": [TOMBSTONE_FIELD],
                    "query": {"match_all": {}},
                });
                if let (Some(a), Value::Object(fields)) = (&after, &mut body) {
                    fields.insert("search_after".into(), a.clone());
                }
                let (s, mut b) = self
                    .call(reqwest::Method::POST, "/_search", Some(&body))
                    .await?;
                if s != 200 {
                    bail!("walking {index}: {s} {b}");
                }
                if let Some(id) = b.get("pit_id").and_then(Value::as_str) {
                    pit = id.to_owned();
                }
                let hits = match b.pointer_mut("/hits/hits").map(Value::take) {
                    Some(Value::Array(hits)) => hits,
                    _ => Vec::new(),
                };
                if hits.is_empty() {
                    return Ok(n);
                }
                for h in &hits {
                    let (Some(id), Some(version)) = (
                        h.get("_id").and_then(Value::as_str),
                        h.get("_version").and_then(Value::as_i64),
                    ) else {
                        bail!("walking {index}: a hit without _id or _version: {h}");
                    };
                    each(
                        id.to_owned(),
                        EsDoc {
                            version,
                            tombstone: is_tombstone(h),
                        },
                    );
                    n += 1;
                }
                // Without the last hit's sort values the walk would start over.
                let sort = hits.last().and_then(|h| h.get("sort")).cloned();
                after = Some(sort.with_context(|| {
                    format!("walking {index}: the last hit of a page has no sort values")
                })?);
            }
        }
        .await;
        // Free the point in time at once rather than letting it hold segments until it
        // expires; a failure here changes nothing about the walk.
        let _ = self
            .call(reqwest::Method::DELETE, "/_pit", Some(&json!({"id": pit})))
            .await;
        result
    }

    /// The current state of these documents (by `_mget`, tombstones included).
    pub async fn mget(
        &self,
        index: &str,
        ids: &[String],
    ) -> anyhow::Result<HashMap<String, EsDoc>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(1_000) {
            let body = json!({"ids": chunk});
            let (s, b) = self
                .call(
                    reqwest::Method::POST,
                    &format!("/{index}/_mget?_source_includes={TOMBSTONE_FIELD}"),
                    Some(&body),
                )
                .await?;
            if s != 200 {
                bail!("_mget on {index}: {s} {b}");
            }
            for d in b
                .get("docs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if d.get("found").and_then(Value::as_bool) != Some(true) {
                    continue;
                }
                if let (Some(id), Some(version)) = (
                    d.get("_id").and_then(Value::as_str),
                    d.get("_version").and_then(Value::as_i64),
                ) {
                    let tombstone = is_tombstone(d);
                    out.insert(id.to_owned(), EsDoc { version, tombstone });
                }
            }
        }
        Ok(out)
    }

    /// Make recent writes visible to the walk (the walk reads searchable documents).
    pub async fn refresh(&self, index: &str) -> anyhow::Result<()> {
        let (s, b) = self
            .call(reqwest::Method::POST, &format!("/{index}/_refresh"), None)
            .await?;
        if s != 200 {
            bail!("refreshing {index}: {s} {b}");
        }
        Ok(())
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// One entity's state in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedisEntry {
    /// The version guard (`None`: absent or not a canonical version).
    pub guard: Option<i64>,
    /// The version of the cached value, when one is cached.
    pub cached: Option<i64>,
}

/// A Redis with Syncline's key layout.
pub struct RedisStore {
    conn: MultiplexedConnection,
    layout: KeyLayout,
    redacted: String,
}

/// One `MGET`'s answer.
type Raw = Vec<Option<Vec<u8>>>;

/// Keys per `MGET` (a pipeline carries as many as one call needs).
const MGET_KEYS: usize = 1_000;

fn parse_version(raw: &[u8]) -> Option<i64> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

/// The version at the head of a cached value (`<version>\n<document>`).
fn cached_version(raw: &[u8]) -> Option<i64> {
    let end = raw.iter().position(|b| *b == b'\n')?;
    parse_version(raw.get(..end)?)
}

impl RedisStore {
    /// Connect to `url` (`redis://` or `rediss://`).
    pub async fn connect(url: &str, layout: KeyLayout) -> anyhow::Result<RedisStore> {
        let redacted = redact_url(url);
        let client =
            redis::Client::open(url).map_err(|e| anyhow!("--redis-url {redacted}: {e}"))?;
        let conn = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| anyhow!("Redis at {redacted}: no answer within 10 s"))?
        .map_err(|e| anyhow!("Redis at {redacted}: {e}"))?;
        Ok(RedisStore {
            conn,
            layout,
            redacted,
        })
    }

    /// The key prefix's current generation (`syncline-ctl rebuild redis` switches it): the
    /// keys to compare are that generation's.
    async fn generation(&mut self) -> anyhow::Result<u64> {
        syncline_cache::admin::current_generation(&mut self.conn, &self.layout)
            .await
            .map_err(|e| anyhow!("Redis at {}: {e}", self.redacted))
    }

    /// Guards (and cached values' versions) of these entities in the current generation,
    /// by pipelined `MGET`s.
    pub async fn entries(
        &mut self,
        entity_type: &str,
        ids: &[&str],
    ) -> anyhow::Result<Vec<RedisEntry>> {
        let generation = self.generation().await?;
        self.entries_in(generation, entity_type, ids).await
    }

    /// [`RedisStore::entries`] in `generation`: two `MGET`s (guards, values) per
    /// [`MGET_KEYS`] ids, all in one pipelined round trip.
    async fn entries_in(
        &mut self,
        generation: u64,
        entity_type: &str,
        ids: &[&str],
    ) -> anyhow::Result<Vec<RedisEntry>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for chunk in ids.chunks(MGET_KEYS) {
            let mut guards = redis::cmd("MGET");
            let mut values = redis::cmd("MGET");
            for id in chunk {
                guards.arg(self.layout.guard_key_in(generation, entity_type, id));
                values.arg(self.layout.cache_key_in(generation, entity_type, id));
            }
            pipe.add_command(guards).add_command(values);
        }
        // The values are fetched whole; in `invalidate` mode few entities have one.
        let answers: Vec<Raw> = pipe
            .query_async(&mut self.conn)
            .await
            .map_err(|e| anyhow!("Redis at {}: {e}", self.redacted))?;
        let mut out = Vec::with_capacity(ids.len());
        let mut answers = answers.into_iter();
        while let (Some(g), Some(v)) = (answers.next(), answers.next()) {
            for (g, v) in g.into_iter().zip(v) {
                out.push(RedisEntry {
                    guard: g.as_deref().and_then(parse_version),
                    cached: v.as_deref().and_then(cached_version),
                });
            }
        }
        if out.len() != ids.len() {
            bail!(
                "Redis at {}: {} answers to {} keys",
                self.redacted,
                out.len(),
                ids.len()
            );
        }
        Ok(out)
    }

    /// Every entity of `entity_type` with a cached value, by `SCAN` (each batch of keys
    /// read with pipelined `MGET`s), with its version, into `out` (a repeated `SCAN` key
    /// is pushed twice). Returns the number of cached values found.
    pub async fn cached_entities(
        &mut self,
        entity_type: &str,
        out: &mut Sorter<i64>,
    ) -> anyhow::Result<u64> {
        let generation = self.generation().await?;
        let probe = self.layout.cache_key_in(generation, entity_type, "");
        // `<prefix><type>:{` then the id then `}`; glob characters escaped.
        let head = probe.strip_suffix('}').unwrap_or(&probe).to_owned();
        let mut pattern = String::new();
        for c in head.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str("*}");
        let mut cursor: u64 = 0;
        let mut found = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut self.conn)
                .await
                .map_err(|e| anyhow!("Redis at {}: {e}", self.redacted))?;
            let ids: Vec<String> = batch
                .into_iter()
                .filter_map(|k| {
                    k.strip_prefix(&head)
                        .and_then(|r| r.strip_suffix('}'))
                        .map(str::to_owned)
                })
                .collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let entries = self.entries_in(generation, entity_type, &refs).await?;
            for (id, e) in ids.into_iter().zip(entries) {
                if let Some(v) = e.cached {
                    out.push(id, v).context("sorting Redis entries on disk")?;
                    found += 1;
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(found)
    }
}
