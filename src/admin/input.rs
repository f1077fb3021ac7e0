//! Reading what admin requests send: JSON bodies, a drain's deadline, a weight.

use super::api::Rejection;
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

/// A drain's deadline: `?deadline=30s` or `{"deadline": "30s"}` (a humantime duration), or
/// none.
pub(super) async fn drain_deadline(req: Request<Incoming>) -> Result<Option<Duration>, Rejection> {
    let from_query = req
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("deadline="))
        .map(str::to_owned);
    let text = match from_query {
        Some(text) => Some(text),
        None => match read_optional_json(req).await? {
            None => None,
            Some(body) => match body.get("deadline") {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) => Some(text.clone()),
                Some(_) => return Err(bad_deadline()),
            },
        },
    };
    text.map(|text| humantime::parse_duration(&text).map_err(|_| bad_deadline()))
        .transpose()
}

fn bad_deadline() -> Rejection {
    Rejection::new(
        StatusCode::BAD_REQUEST,
        "expected a deadline such as ?deadline=30s or {\"deadline\": \"30s\"}",
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
