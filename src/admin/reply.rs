//! The admin API's answers: JSON replies, plain text, and refusals (`Rejection`), which every
//! handler and check below the router speaks.

use super::body::AdminBody;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde::Serialize;
use serde_json::json;

/// An admin answer.
pub(super) type Reply = Response<AdminBody>;

/// A refused admin request, turned into a JSON error reply at the top.
#[derive(Debug)]
pub(super) struct Rejection {
    pub(super) status: StatusCode,
    pub(super) message: String,
    pub(super) allow: Option<String>,
    pub(super) www_authenticate: bool,
}

impl Rejection {
    /// A refusal with `status` and `message`.
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow: None,
            www_authenticate: false,
        }
    }

    /// The JSON error answer, with `Allow` or `WWW-Authenticate` where they apply.
    pub(super) fn into_reply(self) -> Reply {
        let mut reply = error(self.status, &self.message);
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            reply.headers_mut().insert(header::ALLOW, allow);
        }
        if self.www_authenticate {
            reply
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        reply
    }
}

/// Refuses a method not in `methods` (405 with `Allow`).
pub(super) fn allow<B>(req: &Request<B>, methods: &[Method]) -> Result<(), Rejection> {
    if methods.contains(req.method()) {
        return Ok(());
    }
    let allowed: Vec<&str> = methods.iter().map(Method::as_str).collect();
    Err(Rejection {
        allow: Some(allowed.join(", ")),
        ..Rejection::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
    })
}

/// A JSON answer.
pub(super) fn json_reply<T: Serialize>(status: StatusCode, value: &T) -> Reply {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|err| {
        tracing::error!(%err, "cannot serialize an admin answer");
        b"{}".to_vec()
    });
    let mut reply = Response::new(AdminBody::Full(Some(Bytes::from(body))));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

/// A JSON error answer: `{"error": message}`.
pub(super) fn error(status: StatusCode, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

/// A plain-text answer.
pub(super) fn text(status: StatusCode, body: &'static str) -> Reply {
    let mut reply = Response::new(AdminBody::Full(Some(Bytes::from_static(body.as_bytes()))));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}
