//! The few Elasticsearch requests a rebuild makes besides the sink's bulk writes: alias
//! and index inspection, index creation, settings, refresh, health and the alias swap.
//!
//! They go through the indexer's own client (`syncline_es_indexer::client::build_client`),
//! so URL, auth, CA file and timeout are the indexer's settings.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::{json, Map, Value};

/// A thin JSON-over-HTTP wrapper around the client.
pub struct EsApi {
    client: Elasticsearch,
}

/// One concrete index named `<alias>-NNNNNN` and the aliases it carries.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The generation number (the `NNNNNN` suffix).
    pub number: u32,
    /// The index name.
    pub index: String,
    /// Alias name -> its definition (`is_write_index`, `filter`, ...).
    pub aliases: Map<String, Value>,
}

impl Generation {
    /// Does this index carry `alias`?
    pub fn has(&self, alias: &str) -> bool {
        self.aliases.contains_key(alias)
    }
}

/// `<alias>-NNNNNN` -> NNNNNN.
pub fn generation_of(alias: &str, index: &str) -> Option<u32> {
    let rest = index.strip_prefix(alias)?.strip_prefix('-')?;
    if rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_digit()) {
        rest.parse().ok()
    } else {
        None
    }
}

impl EsApi {
    /// Wrap `client`.
    pub fn new(client: Elasticsearch) -> Self {
        EsApi { client }
    }

    /// Send one request; returns the status and the parsed body (`Null` if not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let response = self
            .client
            .send(
                method,
                path,
                HeaderMap::new(),
                Option::<&()>::None,
                body.map(JsonBody::new),
                None,
            )
            .await
            .with_context(|| format!("Elasticsearch request {method:?} {path} failed"))?;
        let status = response.status_code().as_u16();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer to {method:?} {path}"))?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// Like [`EsApi::call`], failing unless the status is 2xx.
    pub async fn ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.call(method, path, body).await?;
        if !(200..300).contains(&status) {
            bail!(
                "Elasticsearch answered {status} to {method:?} {path}: {}",
                describe_error(&v)
            );
        }
        Ok(v)
    }

    /// GET `path`: the body on 200, `None` on 404, an error on any other status.
    async fn get_found(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let (status, v) = self.call(Method::Get, path, None).await?;
        match status {
            200 => Ok(Some(v)),
            404 => Ok(None),
            _ => bail!(
                "Elasticsearch answered {status} to GET {path}: {}",
                describe_error(&v)
            ),
        }
    }

    /// Every index named `<alias>-NNNNNN`, by generation, with its aliases.
    pub async fn generations(&self, alias: &str) -> anyhow::Result<BTreeMap<u32, Generation>> {
        let Some(v) = self.get_found(&format!("/{alias}-*/_alias")).await? else {
            return Ok(BTreeMap::new());
        };
        let mut out = BTreeMap::new();
        for (index, def) in v.as_object().into_iter().flatten() {
            if let Some(number) = generation_of(alias, index) {
                let aliases = def
                    .get("aliases")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                out.insert(
                    number,
                    Generation {
                        number,
                        index: index.clone(),
                        aliases,
                    },
                );
            }
        }
        Ok(out)
    }

    /// The indexes behind `alias` with the alias's definition on each (empty: no alias).
    pub async fn alias_indexes(&self, alias: &str) -> anyhow::Result<BTreeMap<String, Value>> {
        let Some(v) = self.get_found(&format!("/_alias/{alias}")).await? else {
            return Ok(BTreeMap::new());
        };
        Ok(v.as_object()
            .into_iter()
            .flatten()
            .filter_map(|(index, def)| {
                def.get("aliases")
                    .and_then(|a| a.get(alias))
                    .map(|d| (index.clone(), d.clone()))
            })
            .collect())
    }

    /// Every alias name in the cluster.
    pub async fn all_aliases(&self) -> anyhow::Result<Vec<String>> {
        let v = self.ok(Method::Get, "/_alias", None).await?;
        let mut names: Vec<String> = v
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(_, def)| def.get("aliases").and_then(Value::as_object))
            .flat_map(|a| a.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// `index.uuid` of `index`: tells a recreated index from the one a group was made for.
    pub async fn index_uuid(&self, index: &str) -> anyhow::Result<String> {
        self.flat_settings(index)
            .await?
            .get("index.uuid")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("index {index} has no index.uuid setting"))
    }

    /// Flat settings of `index` (`index.number_of_replicas`, ...).
    pub async fn flat_settings(&self, index: &str) -> anyhow::Result<Map<String, Value>> {
        let v = self
            .ok(
                Method::Get,
                &format!("/{index}/_settings?flat_settings=true"),
                None,
            )
            .await?;
        Ok(v.get(index)
            .and_then(|i| i.get("settings"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default())
    }

    /// Create `index` with `body`. `Ok(false)` when it already exists.
    pub async fn create_index(&self, index: &str, body: Value) -> anyhow::Result<bool> {
        let path = format!("/{index}");
        let (status, v) = self.call(Method::Put, &path, Some(body)).await?;
        if (200..300).contains(&status) {
            return Ok(true);
        }
        if v.pointer("/error/type").and_then(Value::as_str)
            == Some("resource_already_exists_exception")
        {
            return Ok(false);
        }
        bail!(
            "cannot create index {index}: Elasticsearch answered {status}: {}",
            describe_error(&v)
        )
    }

    /// Apply dynamic settings to `index`.
    pub async fn put_settings(&self, index: &str, settings: Value) -> anyhow::Result<()> {
        self.ok(Method::Put, &format!("/{index}/_settings"), Some(settings))
            .await
            .map(drop)
    }

    /// Make everything written to `index` searchable.
    pub async fn refresh(&self, index: &str) -> anyhow::Result<()> {
        self.ok(Method::Post, &format!("/{index}/_refresh"), None)
            .await
            .map(drop)
    }

    /// Wait until `index`'s primaries are allocated (yellow or better).
    pub async fn wait_ready(&self, index: &str) -> anyhow::Result<()> {
        let path = format!("/_cluster/health/{index}?wait_for_status=yellow&timeout=60s");
        let v = self.ok(Method::Get, &path, None).await?;
        if v.get("timed_out").and_then(Value::as_bool) == Some(true) {
            bail!("index {index} did not become yellow within 60 s: {v}");
        }
        Ok(())
    }

    /// Documents in `index` (tombstones included: a concrete index has no alias filter).
    pub async fn count(&self, index: &str) -> anyhow::Result<u64> {
        let v = self
            .ok(Method::Get, &format!("/{index}/_count"), None)
            .await?;
        v.get("count")
            .and_then(Value::as_u64)
            .with_context(|| format!("Elasticsearch's count of {index} holds no count: {v}"))
    }

    /// Apply alias actions in one atomic `_aliases` request.
    pub async fn alias_actions(&self, actions: Vec<Value>) -> anyhow::Result<()> {
        self.ok(
            Method::Post,
            "/_aliases",
            Some(json!({ "actions": actions })),
        )
        .await
        .map(drop)
    }

    /// Delete `index`; an index already gone is fine.
    pub async fn delete_index(&self, index: &str) -> anyhow::Result<()> {
        let path = format!("/{index}");
        let (status, v) = self.call(Method::Delete, &path, None).await?;
        if (200..300).contains(&status) || status == 404 {
            return Ok(());
        }
        bail!(
            "cannot delete index {index}: Elasticsearch answered {status}: {}",
            describe_error(&v)
        )
    }
}

/// A short description of an Elasticsearch error body (type and reason), never the whole
/// body (it can be large) and never request data.
pub fn describe_error(v: &Value) -> String {
    let e = &v["error"];
    match (e["type"].as_str(), e["reason"].as_str()) {
        (Some(t), Some(r)) => format!("{t}: {r}"),
        (Some(t), None) => t.to_owned(),
        _ => {
            let s = v.to_string();
            s.chars().take(300).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names() {
        assert_eq!(generation_of("product", "product-000002"), Some(2));
        assert_eq!(
            generation_of("shop-product", "shop-product-000010"),
            Some(10)
        );
        assert_eq!(generation_of("product", "product-2"), None);
        assert_eq!(generation_of("product", "product-00000x"), None);
        assert_eq!(generation_of("product", "products-000001"), None);
        assert_eq!(generation_of("product", "product-000001-x"), None);
    }
}
