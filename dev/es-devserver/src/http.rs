//! HTTP/1.1 serving with hyper: body limits (413), the product header, and the truncated
//! responses used by the `close` fault.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::node::{Node, Resp};

/// A response body: all at once, or cut half-way (then the connection is dropped).
#[derive(Debug)]
pub struct RespBody {
    data: Option<Bytes>,
    fail: bool,
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            if !d.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(d))));
            }
        }
        if self.fail {
            self.fail = false;
            return Poll::Ready(Some(Err(std::io::Error::other(
                "es-devserver fault injection: connection closed",
            ))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && !self.fail
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, self.fail) {
            (Some(d), false) => SizeHint::with_exact(d.len() as u64),
            (None, false) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

fn product_headers(resp: &mut Response<RespBody>) {
    let h = resp.headers_mut();
    h.insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
}

fn to_http(r: Resp, accept_compat: Option<HeaderValue>) -> Response<RespBody> {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let full_len = r.body.len();
    let (data, fail) = if r.cut {
        (r.body.slice(..full_len / 2), true)
    } else {
        (r.body, false)
    };
    let mut resp = Response::new(RespBody {
        data: Some(data),
        fail,
    });
    *resp.status_mut() = status;
    let mut has_ct = false;
    for (k, v) in &r.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(k.as_str()),
            HeaderValue::from_str(v),
        ) {
            if name == http::header::CONTENT_TYPE {
                has_ct = true;
            }
            resp.headers_mut().append(name, value);
        }
    }
    if !has_ct && (r.json || full_len > 0) {
        let ct = accept_compat.unwrap_or(HeaderValue::from_static("application/json"));
        resp.headers_mut().insert(http::header::CONTENT_TYPE, ct);
    }
    if r.cut {
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(full_len));
    }
    product_headers(&mut resp);
    resp
}

fn too_large() -> Response<RespBody> {
    let mut resp = Response::new(RespBody {
        data: None,
        fail: false,
    });
    *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    resp.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    product_headers(&mut resp);
    resp
}

/// Serves one HTTP request.
pub async fn serve_request(node: Arc<Node>, req: Request<Incoming>) -> Response<RespBody> {
    let (parts, body) = req.into_parts();
    let max = node.config.max_content_length;
    if let Some(len) = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok())
    {
        if len > max as u64 {
            return too_large();
        }
    }
    let body = match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return too_large();
            }
            let mut resp = Response::new(RespBody {
                data: None,
                fail: false,
            });
            *resp.status_mut() = StatusCode::BAD_REQUEST;
            product_headers(&mut resp);
            return resp;
        }
    };
    let accept_compat = parts
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .filter(|a| a.contains("vnd.elasticsearch+json"))
        .map(|_| HeaderValue::from_static("application/vnd.elasticsearch+json;compatible-with=8"));
    let uri = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let node2 = node.clone();
    let method = parts.method.clone();
    let headers = parts.headers;
    // A handler must not be able to take the server down: a panic becomes a 500.
    let fut = async move { node2.handle(method, &uri, headers, body).await };
    let resp = match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut)).await {
        Ok(r) => r,
        Err(_) => Resp::error(&crate::error::EsError::new(
            500,
            "exception",
            "internal error in es-devserver (this is a bug, please report it)",
        )),
    };
    to_http(resp, accept_compat)
}

/// Serves HTTP/1.1 (keep-alive) on one accepted connection, plain or TLS, until the
/// client closes it or `shutdown` changes.
pub(crate) async fn serve_connection<I>(io: I, node: Arc<Node>, mut shutdown: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        let node = node.clone();
        async move { Ok::<_, Infallible>(serve_request(node, req).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.changed() => {}
    }
}

/// Accepts connections until `shutdown` flips to true, each handled by `on_conn` in a task
/// of its own; then closes the open ones. The plain and the TLS listener differ only in
/// `on_conn`.
pub(crate) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    mut on_conn: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                conns.spawn(on_conn(stream, peer));
            }
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// Accepts connections until `shutdown` flips to true.
pub async fn serve(listener: TcpListener, node: Arc<Node>, shutdown: watch::Receiver<bool>) {
    let conn_shutdown = shutdown.clone();
    accept_loop(listener, shutdown, move |stream, _| {
        serve_connection(stream, node.clone(), conn_shutdown.clone())
    })
    .await;
}
