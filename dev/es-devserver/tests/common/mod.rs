//! A small HTTP helper shared by the behaviour tests (each starts its own in-process server).

#![allow(dead_code)]

use es_devserver::Config;
use serde_json::Value;

pub struct Es {
    pub client: reqwest::Client,
    pub url: String,
    pub server: es_devserver::RunningServer,
}

impl Es {
    pub async fn start() -> Es {
        let server = es_devserver::start(Config::default()).await.expect("start");
        Es {
            client: reqwest::Client::new(),
            url: server.url().to_string(),
            server,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, format!("{}{}", self.url, path));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// Sends an NDJSON body (`_bulk`).
    pub async fn call_ndjson(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = self
            .client
            .request(m, format!("{}{}", self.url, path))
            .header("content-type", "application/x-ndjson")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body).await;
        assert!(s < 300, "{method} {path} -> {s}: {v}");
        v
    }

    /// Expects an error status and returns the body.
    pub async fn err(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        let (s, v) = self.call(method, path, body).await;
        assert_eq!(s, status, "{method} {path}: {v}");
        v
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// The `_id`s of a search response's hits, in order.
pub fn ids(v: &Value) -> Vec<String> {
    v["hits"]["hits"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h["_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
