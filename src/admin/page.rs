//! The status page's HTTP answer: the embedded HTML, with headers that keep it to itself.

use super::body::AdminBody;
use http::{HeaderValue, Response, header};

/// The status page: static HTML and script that read `/api/pools` and `/api/events` (with the
/// token the user gives it), so it holds no data of its own and needs no token to load.
pub(super) fn status_page(mut reply: Response<AdminBody>) -> Response<AdminBody> {
    let headers = reply.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    reply
}
