//! `rescore` with the query rescorer: on each shard the top `window_size` hits of the first
//! query get `query_weight * score` combined (`score_mode`) with `rescore_query_weight *` the
//! rescore query's score when it matches; every other hit keeps `query_weight * score`; then
//! all are ordered by the new score (as Elasticsearch's `QueryRescorer.combine` does).

use serde_json::Value;

use crate::error::{EsError, EsResult};
use crate::json::token_name;
use crate::query::{parse_query, Query};

/// How the two scores combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScoreMode {
    Total,
    Multiply,
    Avg,
    Max,
    Min,
}

/// One query rescorer.
#[derive(Debug, Clone)]
pub(crate) struct Rescorer {
    pub window: usize,
    pub query: Query,
    query_weight: f32,
    rescore_weight: f32,
    mode: ScoreMode,
}

impl Rescorer {
    /// The new score of a hit in the window (`rescore`: the rescore query's score if it
    /// matched).
    pub fn combine(&self, first: f32, rescore: Option<f32>) -> f32 {
        let a = first * self.query_weight;
        let Some(r) = rescore else { return a };
        let b = r * self.rescore_weight;
        match self.mode {
            ScoreMode::Total => a + b,
            ScoreMode::Multiply => a * b,
            ScoreMode::Avg => (a + b) / 2.0,
            ScoreMode::Max => a.max(b),
            ScoreMode::Min => a.min(b),
        }
    }

    /// The new score of a hit outside the window.
    pub fn outside(&self, first: f32) -> f32 {
        first * self.query_weight
    }
}

fn number(v: &Value, what: &str) -> EsResult<f64> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| EsError::parsing(format!("[{what}] is not a number"))),
        Value::String(s) => s
            .parse::<f64>()
            .map_err(|_| EsError::parsing(format!("[{what}] failed to parse [{s}]"))),
        other => Err(EsError::parsing(format!(
            "[{what}] unknown token [{}]",
            token_name(other)
        ))),
    }
}

fn parse_one(v: &Value) -> EsResult<Rescorer> {
    let m = v
        .as_object()
        .ok_or_else(|| EsError::parsing("rescore must be an object"))?;
    let mut window = 10usize;
    let mut rescorer = None;
    for (k, x) in m {
        match k.as_str() {
            "window_size" => {
                let w = number(x, "window_size")?;
                if w < 0.0 {
                    return Err(EsError::illegal_argument(
                        "[window_size] must be greater than or equal to 0",
                    ));
                }
                window = w as usize;
            }
            "query" => {
                let q = x
                    .as_object()
                    .ok_or_else(|| EsError::parsing("[query] rescorer must be an object"))?;
                let mut query = None;
                let (mut qw, mut rw, mut mode) = (1.0f32, 1.0f32, ScoreMode::Total);
                for (qk, qv) in q {
                    match qk.as_str() {
                        "rescore_query" => query = Some(parse_query(qv)?),
                        "query_weight" => qw = number(qv, "query_weight")? as f32,
                        "rescore_query_weight" => rw = number(qv, "rescore_query_weight")? as f32,
                        "score_mode" => {
                            mode = match qv.as_str().map(str::to_ascii_lowercase).as_deref() {
                                Some("total") => ScoreMode::Total,
                                Some("multiply") => ScoreMode::Multiply,
                                Some("avg") => ScoreMode::Avg,
                                Some("max") => ScoreMode::Max,
                                Some("min") => ScoreMode::Min,
                                _ => {
                                    return Err(EsError::illegal_argument(format!(
                                        "illegal score_mode [{}]",
                                        qv.as_str().unwrap_or_default()
                                    )))
                                }
                            }
                        }
                        other => {
                            return Err(EsError::parsing(format!(
                                "[query] unknown field [{other}]"
                            )))
                        }
                    }
                }
                let query = query.ok_or_else(|| {
                    EsError::parsing("[query] rescorer requires a [rescore_query]")
                })?;
                rescorer = Some((query, qw, rw, mode));
            }
            other => {
                return Err(EsError::parsing(format!(
                    "rescore doesn't support rescorer with name [{other}]"
                )))
            }
        }
    }
    let (query, query_weight, rescore_weight, mode) =
        rescorer.ok_or_else(|| EsError::parsing("missing rescore type"))?;
    Ok(Rescorer {
        window,
        query,
        query_weight,
        rescore_weight,
        mode,
    })
}

/// Parses `rescore`: one rescorer or a list, applied in order.
pub(crate) fn parse(v: &Value) -> EsResult<Vec<Rescorer>> {
    match v {
        Value::Array(a) => a.iter().map(parse_one).collect(),
        other => Ok(vec![parse_one(other)?]),
    }
}

/// The checks Elasticsearch makes on each shard before rescoring.
pub(crate) fn validate(rescorers: &[Rescorer], max_window: u64, sorted: bool) -> EsResult<()> {
    if rescorers.is_empty() {
        return Ok(());
    }
    if sorted {
        return Err(EsError::illegal_argument(
            "Cannot use [sort] option in conjunction with [rescore].",
        ));
    }
    for r in rescorers {
        if r.window as u64 > max_window {
            return Err(EsError::illegal_argument(format!(
                "Rescore window [{}] is too large. It must be less than [{max_window}]. This prevents allocating massive heaps for storing the results to be rescored. This limit can be set by changing the [index.max_rescore_window] index level setting.",
                r.window
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_and_combine() {
        let r = parse(
            &json!({"window_size": 5, "query": {"rescore_query": {"match_all": {}},
            "query_weight": 0.5, "rescore_query_weight": 2, "score_mode": "max"}}),
        );
        let r = r.ok().and_then(|mut v| v.pop());
        let Some(r) = r else { panic!("parsed") };
        assert_eq!(r.window, 5);
        assert_eq!(r.combine(2.0, Some(3.0)), 6.0);
        assert_eq!(r.combine(2.0, None), 1.0);
        assert_eq!(r.outside(4.0), 2.0);
        assert!(validate(std::slice::from_ref(&r), 4, false).is_err());
        assert!(validate(&[r], 10, true).is_err());
        assert!(parse(&json!({"query": {}})).is_err());
    }
}
