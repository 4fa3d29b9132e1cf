//! Polling with a deadline: the only way tests here wait for asynchronous effects.

use std::future::Future;
use std::time::{Duration, Instant};

/// Poll `check` every `every` until it returns `Some`, or fail after `timeout` with the
/// last description `describe` gives of what was still missing.
pub async fn wait_until<T, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(why) if Instant::now() >= deadline => {
                return Err(format!("gave up after {timeout:?}: {why}"))
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
