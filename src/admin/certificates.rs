//! `GET /api/certificates`: every certificate served, from files and by ACME, with its expiry
//! and, for ACME, its next renewal and last error; `POST /api/certificates/{name}/renew` asks
//! ACME to renew the certificate with that name now (the old one serves until the new one is
//! in hand).

use super::AdminState;
use super::reply::{Rejection, Reply, json_reply};
use http::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, UNIX_EPOCH};

/// Every served certificate.
pub(super) fn list(state: &AdminState) -> Reply {
    let snapshot = state.control.snapshot.load();
    let mut certificates: Vec<Value> = snapshot
        .certificates
        .iter()
        .map(|c| {
            let not_after = UNIX_EPOCH + Duration::from_secs_f64(c.expires.max(0.0));
            json!({
                "source": "file",
                "listener": c.listener,
                "names": [c.name],
                "not_after": crate::events::timestamp(not_after),
            })
        })
        .collect();
    for status in state.live.status().iter() {
        let mut entry = serde_json::to_value(status).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut entry {
            map.insert("source".to_owned(), json!("acme"));
        }
        certificates.push(entry);
    }
    json_reply(StatusCode::OK, &json!({ "certificates": certificates }))
}

/// Asks for the ACME certificate named `name` to be renewed now.
pub(super) fn renew(state: &AdminState, name: &str) -> Result<Reply, Rejection> {
    let name = name.to_ascii_lowercase();
    if !state.live.ask_renewal(&name) {
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            format!("no ACME certificate has the name {name:?}"),
        ));
    }
    Ok(json_reply(
        StatusCode::ACCEPTED,
        &json!({ "renewing": name }),
    ))
}
