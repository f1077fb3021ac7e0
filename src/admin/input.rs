//! Reading what admin requests send: JSON bodies, a drain's deadline, a weight.

use super::reply::Rejection;
use crate::upstream::MAX_DRAIN_DEADLINE;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use std::time::Duration;

/// Largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;

/// The JSON body, or `None` without one.
async fn read_optional_json(req: Request<Incoming>) -> Result<Option<Value>, Rejection> {
    let body = read_body(req).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|err| Rejection::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {err}")))
}

pub(super) async fn read_json(req: Request<Incoming>) -> Result<Value, Rejection> {
    let body = read_body(req).await?;
    serde_json::from_slice(&body)
        .map_err(|err| Rejection::new(StatusCode::BAD_REQUEST, format!("invalid JSON: {err}")))
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Rejection> {
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large or incomplete",
            )
        })?
        .to_bytes();
    Ok(body)
}

/// A drain's deadline: `?deadline=30s` or `{"deadline": "30s"}` (a humantime duration of at
/// most [`MAX_DRAIN_DEADLINE`]), or none.
pub(super) async fn drain_deadline(req: Request<Incoming>) -> Result<Option<Duration>, Rejection> {
    let from_query = req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("deadline="))
        .map(str::to_owned);
    match from_query {
        Some(text) => parse_deadline(&text).map(Some),
        None => deadline_in(read_optional_json(req).await?),
    }
}

/// The deadline of a drain's JSON body, if it has one.
pub(super) fn deadline_in(body: Option<Value>) -> Result<Option<Duration>, Rejection> {
    match body.as_ref().and_then(|body| body.get("deadline")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => parse_deadline(text).map(Some),
        Some(_) => Err(bad_deadline()),
    }
}

/// One deadline's text, within [`MAX_DRAIN_DEADLINE`].
pub(super) fn parse_deadline(text: &str) -> Result<Duration, Rejection> {
    match crate::config::parse_duration(text) {
        Ok(deadline) if deadline <= MAX_DRAIN_DEADLINE => Ok(deadline),
        Ok(_) => Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "a drain deadline may be at most 30 days (720h); drain without one to keep it drained",
        )),
        Err(_) => Err(bad_deadline()),
    }
}

fn bad_deadline() -> Rejection {
    Rejection::new(
        StatusCode::BAD_REQUEST,
        "expected a deadline of at most 30 days, a number and a unit with no space (ms, s, m, h, d), such as ?deadline=30s or {\"deadline\": \"30s\"}",
    )
}

/// `{"weight": N}` with N in 1..=256, or `{"weight": null}` to return to the file's weight.
pub(super) fn weight_from(body: Value) -> Result<Option<u32>, Rejection> {
    let bad = || {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "expected {\"weight\": N} with N from 1 to 256, or {\"weight\": null} to use the file's weight",
        )
    };
    match body.get("weight") {
        Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(w @ 1..=256) => Ok(Some(w as u32)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever an operator sends, the answer is a deadline within the bound or a 400.
        #[test]
        fn any_deadline_text_is_bounded_or_refused(text in ".{0,40}", secs: u64, unit in "(ns|ms|s|m|h|d|w|M|y|years| sec)") {
            for text in [text, format!("{secs}{unit}")] {
                match parse_deadline(&text) {
                    Ok(deadline) => prop_assert!(deadline <= MAX_DRAIN_DEADLINE),
                    Err(rejection) => prop_assert_eq!(rejection.status, StatusCode::BAD_REQUEST),
                }
            }
        }

        /// Any JSON number or string as a weight is a weight from 1 to 256 or a 400.
        #[test]
        fn any_weight_is_bounded_or_refused(n: f64, i: i64, text in ".{0,12}") {
            for value in [serde_json::json!(n), serde_json::json!(i), serde_json::json!(text)] {
                match weight_from(serde_json::json!({ "weight": value })) {
                    Ok(weight) => prop_assert!(weight.is_some_and(|w| (1..=256).contains(&w))),
                    Err(rejection) => prop_assert_eq!(rejection.status, StatusCode::BAD_REQUEST),
                }
            }
        }
    }

    #[test]
    fn deadlines_past_thirty_days_are_refused_naming_the_limit() {
        for text in ["8000years", "10000years", "9223372036854775807s", "31d"] {
            let rejection = parse_deadline(text).expect_err(text);
            assert!(rejection.message.contains("30 days"), "{text}");
        }
        assert_eq!(parse_deadline("30d").ok(), Some(MAX_DRAIN_DEADLINE));
        let body = serde_json::json!({ "deadline": "10000years" });
        assert!(deadline_in(Some(body)).is_err());
    }
}
