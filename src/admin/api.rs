//! Admin routes and handlers. Errors answer JSON `{"error": "..."}`: unknown routes 404, wrong
//! methods 405 (with `Allow`), bad JSON 400, missing or wrong token 401.

use super::AdminState;
use super::body::AdminBody;
use super::input::{drain_deadline, read_json, weight_from};
use crate::control::{BackendChange, Command, LookupError};
use crate::reload::{ReloadOutcome, ReloadRequest};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

use super::reply::{Rejection, Reply, allow, error, json_reply, text};

/// Answers one admin request.
pub async fn handle(req: Request<Incoming>, state: &AdminState) -> Reply {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => match allow(&req, &[Method::GET, Method::HEAD]) {
            Ok(()) => super::page::status_page(text(StatusCode::OK, include_str!("status.html"))),
            Err(rejection) => rejection.into_reply(),
        },
        ["healthz"] => match allow(&req, &[Method::GET, Method::HEAD]) {
            Ok(()) if state.control_failed.is_cancelled() => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "control plane stopped; draining to exit\n",
            ),
            // Relaxed: see `AdminState::lame_duck`.
            Ok(()) if state.lame_duck.load(Ordering::Relaxed) => {
                text(StatusCode::SERVICE_UNAVAILABLE, "lame duck\n")
            }
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(rejection) => rejection.into_reply(),
        },
        ["metrics"] => {
            if let Err(rejection) =
                super::guard::admit(&req, state).and_then(|()| allow(&req, &[Method::GET]))
            {
                return rejection.into_reply();
            }
            let text = super::exposition::render(
                &state.metrics,
                &state.control.snapshot.load(),
                &state.live.status(),
            );
            let mut reply = Response::new(AdminBody::Full(Some(Bytes::from(text))));
            reply.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            reply
        }
        ["api", rest @ ..] => match super::guard::admit(&req, state) {
            Ok(()) => api(req, rest, state)
                .await
                .unwrap_or_else(Rejection::into_reply),
            Err(rejection) => rejection.into_reply(),
        },
        _ => error(StatusCode::NOT_FOUND, "no such route"),
    }
}

async fn api(
    req: Request<Incoming>,
    rest: &[&str],
    state: &AdminState,
) -> Result<Reply, Rejection> {
    match rest {
        ["pools"] => {
            allow(&req, &[Method::GET])?;
            let pools = ask(state, |reply| Command::Describe { pool: None, reply }).await?;
            Ok(json_reply(StatusCode::OK, &pools))
        }
        ["pools", pool] => {
            allow(&req, &[Method::GET])?;
            let pool = Some((*pool).to_owned());
            let mut pools = ask(state, |reply| Command::Describe { pool, reply }).await?;
            Ok(json_reply(StatusCode::OK, &pools.pop()))
        }
        ["pools", pool, "backends", backend] => {
            allow(&req, &[Method::GET])?;
            change_backend(state, pool, backend, BackendChange::Nothing).await
        }
        ["pools", pool, "backends", backend, "drain"] => {
            allow(&req, &[Method::POST])?;
            let change = BackendChange::Drain(drain_deadline(req).await?);
            change_backend(state, pool, backend, change).await
        }
        ["pools", pool, "backends", backend, "undrain"] => {
            allow(&req, &[Method::POST])?;
            change_backend(state, pool, backend, BackendChange::Undrain).await
        }
        ["pools", pool, "backends", backend, "weight"] => {
            allow(&req, &[Method::PUT])?;
            let change = BackendChange::Weight(weight_from(read_json(req).await?)?);
            change_backend(state, pool, backend, change).await
        }
        ["sticky", "rotate"] => {
            allow(&req, &[Method::POST])?;
            let reply = |reply| Command::RotateStickyKey { reply };
            let asked = state.control.ask(reply).await.ok_or_else(shutting_down)?;
            Ok(if asked {
                json_reply(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({ "rotation": "requested" }),
                )
            } else {
                json_reply(
                    StatusCode::CONFLICT,
                    &serde_json::json!({
                        "error": "not in a fleet: a pool's own sticky secret rotates with previous_secret_file and a reload"
                    }),
                )
            })
        }
        ["reload"] if req.method() == Method::GET => {
            let running = state.running.load();
            Ok(match &running.last_reload {
                Some(last) => json_reply(StatusCode::OK, last),
                None => json_reply(
                    StatusCode::OK,
                    &serde_json::json!({
                        "result": "none",
                        "detail": "no reload since start",
                        "generation": running.generation,
                    }),
                ),
            })
        }
        ["reload"] => {
            allow(&req, &[Method::GET, Method::POST])?;
            let (reply, outcome) = oneshot::channel();
            let request = ReloadRequest {
                trigger: "api",
                reply: Some(reply),
            };
            state
                .reload
                .send(request)
                .await
                .map_err(|_| shutting_down())?;
            Ok(match outcome.await.map_err(|_| shutting_down())? {
                outcome @ ReloadOutcome::Applied { .. } => json_reply(StatusCode::OK, &outcome),
                outcome @ ReloadOutcome::Rejected { .. } => {
                    json_reply(StatusCode::BAD_REQUEST, &outcome)
                }
            })
        }
        ["routes"] => {
            allow(&req, &[Method::GET])?;
            let explained =
                super::routes::explain(&state.control.snapshot.load(), req.uri().query())?;
            Ok(json_reply(StatusCode::OK, &explained))
        }
        ["config"] => {
            allow(&req, &[Method::GET])?;
            let running = state.running.load();
            let config = running
                .text
                .as_deref()
                .and_then(|text| toml::from_str::<toml::Value>(text).ok())
                .and_then(|value| serde_json::to_value(value).ok())
                .map(redact);
            Ok(json_reply(
                StatusCode::OK,
                &json!({ "path": running.path, "generation": running.generation, "config": config }),
            ))
        }
        ["lameduck"] => {
            allow(&req, &[Method::GET, Method::POST, Method::DELETE])?;
            let on = match *req.method() {
                Method::POST => true,
                Method::DELETE => false,
                _ => state.lame_duck.load(Ordering::Relaxed),
            };
            let was = state.lame_duck.swap(on, Ordering::Relaxed);
            if was != on {
                tracing::warn!(
                    lame_duck = on,
                    "lame-duck mode changed through the admin API"
                );
            }
            Ok(json_reply(StatusCode::OK, &json!({ "lame_duck": on })))
        }
        ["certificates"] => {
            allow(&req, &[Method::GET])?;
            Ok(super::certificates::list(state))
        }
        ["certificates", name, "renew"] => {
            allow(&req, &[Method::POST])?;
            super::certificates::renew(state, name)
        }
        ["events"] => {
            allow(&req, &[Method::GET])?;
            Ok(super::events::stream(&req, state))
        }
        _ => Err(Rejection::new(StatusCode::NOT_FOUND, "no such route")),
    }
}

/// Asks the control plane; maps a missing pool or backend to 404.
/// Applies `change` to a backend and answers with its view afterwards.
async fn change_backend(
    state: &AdminState,
    pool: &str,
    backend: &str,
    change: BackendChange,
) -> Result<Reply, Rejection> {
    let (pool, backend) = (pool.to_owned(), backend.to_owned());
    let view = ask(state, |reply| Command::Backend {
        pool,
        backend,
        change,
        reply,
    })
    .await?;
    Ok(json_reply(StatusCode::OK, &view))
}

async fn ask<T>(
    state: &AdminState,
    command: impl FnOnce(oneshot::Sender<Result<T, LookupError>>) -> Command,
) -> Result<T, Rejection> {
    match state.control.ask(command).await {
        Some(Ok(answer)) => Ok(answer),
        Some(Err(err)) => Err(Rejection::new(StatusCode::NOT_FOUND, err.to_string())),
        None => Err(shutting_down()),
    }
}

/// The answer when the part of the proxy a request needs has already stopped.
fn shutting_down() -> Rejection {
    Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the proxy is shutting down",
    )
}

/// Replaces the values of keys that may hold secrets.
fn redact(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let key = key.to_ascii_lowercase();
                if ["token", "secret", "password", "key"]
                    .iter()
                    .any(|s| key.contains(s))
                {
                    *v = Value::String("<redacted>".to_owned());
                } else {
                    *v = redact(v.take());
                }
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                *item = redact(item.take());
            }
        }
        _ => {}
    }
    value
}
