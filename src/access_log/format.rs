//! Access log line formats: JSON written directly (here), NGINX's combined format, and that
//! followed by the proxy's own fields as `key=value` pairs (`combined.rs`).

use super::Record;
use crate::config::AccessLogFormat;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats lines. JSON is written directly rather than through a serializer: the fields are
/// fixed, most strings need no escaping, and formatting is most of the access log's cost.
pub(super) struct LineFormat {
    format: AccessLogFormat,
    /// The second whose date was formatted last, and that date without its `Z`: most lines
    /// share their second with the previous one.
    second: u64,
    date: String,
    /// The same second as NGINX's `$time_local` in UTC: `21/Nov/2026:22:11:26 +0000`.
    pub(super) local: String,
}

impl LineFormat {
    pub(super) fn new(format: AccessLogFormat) -> Self {
        Self {
            format,
            second: u64::MAX,
            date: String::new(),
            local: String::new(),
        }
    }

    /// Appends one line for `record` to `out`.
    pub(super) fn write(&mut self, record: &Record, out: &mut Vec<u8>) {
        match self.format {
            AccessLogFormat::Json => self.json(record, out),
            AccessLogFormat::Combined => self.combined(record, out),
            AccessLogFormat::Extended => {
                self.combined(record, out);
                self.extended(record, out);
            }
        }
        out.push(b'\n');
    }

    fn json(&mut self, record: &Record, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        self.time(record.time, out);
        out.extend_from_slice(b"\",\"client\":");
        json_str(out, record.client.to_str().unwrap_or("-"));
        out.extend_from_slice(b",\"host\":");
        match record.host() {
            Some(host) => json_str(out, host),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"protocol\":");
        json_str(out, protocol(record.version));
        out.extend_from_slice(b",\"method\":");
        json_str(out, record.method.as_str());
        out.extend_from_slice(b",\"path\":");
        json_str(out, record.uri.path());
        out.extend_from_slice(b",\"status\":");
        integer(out, record.status.as_u16());
        out.extend_from_slice(b",\"upstream_status\":");
        match record.upstream_status {
            Some(status) => integer(out, status),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"upstream_error\":");
        match record.upstream_error {
            Some(error) => json_str(out, error),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"bytes_in\":");
        integer(out, record.bytes_in);
        out.extend_from_slice(b",\"bytes_out\":");
        integer(out, record.bytes_out);
        out.extend_from_slice(b",\"duration_ms\":");
        millis(out, record.total);
        out.extend_from_slice(b",\"upstream_ms\":");
        match record.upstream {
            Some(upstream) => millis(out, upstream),
            None => out.extend_from_slice(b"null"),
        }
        for (key, value) in [
            (&b",\"route\":"[..], &record.route),
            (b",\"pool\":", &record.pool),
            (b",\"backend\":", &record.backend),
        ] {
            out.extend_from_slice(key);
            match value {
                Some(value) => json_str(out, value),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b",\"retries\":");
        integer(out, record.retries);
        out.extend_from_slice(b",\"user_agent\":");
        optional_json_str(out, record.user_agent.as_ref());
        out.extend_from_slice(b",\"referer\":");
        optional_json_str(out, record.referer.as_ref());
        out.extend_from_slice(b",\"request_id\":");
        match record.request_id.to_str() {
            Ok(id) => json_str(out, id),
            Err(_) => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"grpc_status\":");
        match record.grpc_status {
            Some(status) => integer(out, status),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"tls\":");
        match &record.tls {
            Some(tls) => {
                out.extend_from_slice(b"{\"version\":");
                json_str(out, tls.version);
                out.extend_from_slice(b",\"cipher\":");
                json_str(out, tls.cipher);
                for (key, value) in [
                    (&b",\"sni\":"[..], tls.sni.as_deref()),
                    (b",\"alpn\":", tls.alpn),
                ] {
                    out.extend_from_slice(key);
                    match value {
                        Some(value) => json_str(out, value),
                        None => out.extend_from_slice(b"null"),
                    }
                }
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }

    /// RFC 3339 in UTC with milliseconds: `2026-11-21T22:11:26.925Z`.
    fn time(&mut self, time: SystemTime, out: &mut Vec<u8>) {
        let millis = self.cache_second(time);
        out.extend_from_slice(self.date.as_bytes());
        out.push(b'.');
        three_digits(out, millis);
        out.push(b'Z');
    }

    /// Formats `time`'s second unless it is the one formatted last; returns the milliseconds.
    pub(super) fn cache_second(&mut self, time: SystemTime) -> u32 {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since_epoch.as_secs();
        if second != self.second {
            self.second = second;
            self.date = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(second))
                .to_string();
            self.date.pop(); // the `Z`, written after the milliseconds
            self.local = nginx_local(&self.date);
        }
        since_epoch.subsec_millis()
    }
}

/// `2026-11-21T22:11:26` as NGINX's `$time_local` in UTC: `21/Nov/2026:22:11:26 +0000`.
fn nginx_local(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, clock) = (
        &rfc3339[0..4],
        &rfc3339[5..7],
        &rfc3339[8..10],
        &rfc3339[11..19],
    );
    let month = month
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .unwrap_or(&"Jan");
    format!("{day}/{month}/{year}:{clock} +0000")
}

/// The request's protocol as NGINX's `$server_protocol` writes it.
pub(super) fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// A header value as a JSON string, `null` when absent.
fn optional_json_str(out: &mut Vec<u8>, value: Option<&http::HeaderValue>) {
    let Some(value) = value else {
        out.extend_from_slice(b"null");
        return;
    };
    // Header values are almost always ASCII: check that cheaply, and only go lossy otherwise.
    match std::str::from_utf8(value.as_bytes()) {
        Ok(text) => json_str(out, text),
        Err(_) => json_str(out, &String::from_utf8_lossy(value.as_bytes())),
    }
}

/// Appends `value` as a JSON string; only strings that need escaping go through serde_json.
fn json_str(out: &mut Vec<u8>, value: &str) {
    if value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

pub(super) fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A duration in milliseconds with three decimals (microsecond resolution): `1.219`.
pub(super) fn millis(out: &mut Vec<u8>, duration: Duration) {
    let micros = duration.as_micros();
    integer(out, micros / 1000);
    out.push(b'.');
    three_digits(out, (micros % 1000) as u32);
}

fn three_digits(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&[
        b'0' + (value / 100 % 10) as u8,
        b'0' + (value / 10 % 10) as u8,
        b'0' + (value % 10) as u8,
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Method, StatusCode};

    fn record() -> Record {
        Record {
            time: UNIX_EPOCH + Duration::from_millis(1_795_299_086_925),
            client: HeaderValue::from_static("127.0.0.1"),
            host: Some(HeaderValue::from_static("example.com")),
            version: http::Version::HTTP_11,
            user_agent: Some(HeaderValue::from_static("curl/8.5.0 \"quoted\"")),
            referer: None,
            method: Method::GET,
            uri: "/a/b?secret=1".parse().unwrap(),
            status: StatusCode::OK,
            upstream_status: Some(200),
            bytes_in: 0,
            bytes_out: 21,
            total: Duration::from_micros(1_219),
            upstream: Some(Duration::from_micros(50)),
            route: Some("web".into()),
            pool: Some("web".into()),
            backend: None,
            retries: 1,
            request_id: HeaderValue::from_static("req-\"1\\"),
            grpc_status: None,
            upstream_error: None,
            tls: None,
        }
    }

    fn line(format: AccessLogFormat) -> String {
        let mut out = Vec::new();
        let mut formatter = LineFormat::new(format);
        formatter.write(&record(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_lines_parse_back_with_every_field() {
        let text = line(AccessLogFormat::Json);
        assert!(text.ends_with("}\n"));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "time": "2026-11-21T22:11:26.925Z", "client": "127.0.0.1",
                "host": "example.com", "protocol": "HTTP/1.1", "method": "GET",
                "path": "/a/b", "status": 200, "upstream_status": 200, "upstream_error": null, "bytes_in": 0,
                "bytes_out": 21, "duration_ms": 1.219, "upstream_ms": 0.05, "route": "web",
                "pool": "web", "backend": null, "retries": 1,
                "user_agent": "curl/8.5.0 \"quoted\"", "referer": null,
                "request_id": "req-\"1\\", "grpc_status": null, "tls": null
            })
        );
    }

    #[test]
    fn tls_details_are_logged_in_both_formats() {
        let mut tls_record = record();
        tls_record.tls = Some(std::sync::Arc::new(crate::tls::TlsInfo {
            version: "TLSv1.3",
            cipher: "TLS13_AES_128_GCM_SHA256",
            sni: Some("a.test".into()),
            alpn: None,
        }));
        let mut formatter = LineFormat::new(AccessLogFormat::Json);
        let mut out = Vec::new();
        formatter.write(&tls_record, &mut out);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value["tls"],
            serde_json::json!({"version": "TLSv1.3", "cipher": "TLS13_AES_128_GCM_SHA256",
                               "sni": "a.test", "alpn": null})
        );
        let mut formatter = LineFormat::new(AccessLogFormat::Extended);
        out.clear();
        formatter.write(&tls_record, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(" tls=TLSv1.3 cipher=TLS13_AES_128_GCM_SHA256 sni=a.test alpn=-\n"),
            "{text}"
        );
    }

    #[test]
    fn the_cached_date_follows_the_second() {
        let mut formatter = LineFormat::new(AccessLogFormat::Combined);
        let mut out = Vec::new();
        let mut late = record();
        late.time += Duration::from_millis(34_100);
        for record in [record(), late] {
            formatter.write(&record, &mut out);
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("[21/Nov/2026:22:11:26 +0000]"), "{text}");
        assert!(text.contains("[21/Nov/2026:22:12:01 +0000]"), "{text}");
    }

    #[test]
    fn combined_is_exactly_nginx_and_extended_adds_key_values() {
        assert_eq!(
            line(AccessLogFormat::Combined),
            "127.0.0.1 - - [21/Nov/2026:22:11:26 +0000] \"GET /a/b?secret=1 HTTP/1.1\" 200 21 \
             \"-\" \"curl/8.5.0 \\x22quoted\\x22\"\n"
        );
        assert_eq!(
            line(AccessLogFormat::Extended),
            "127.0.0.1 - - [21/Nov/2026:22:11:26 +0000] \"GET /a/b?secret=1 HTTP/1.1\" 200 21 \
             \"-\" \"curl/8.5.0 \\x22quoted\\x22\" host=example.com upstream_status=200 \
             upstream_error=- bytes_in=0 duration_ms=1.219 upstream_ms=0.050 route=web pool=web backend=- \
             retries=1 request_id=req-\"1\\ grpc_status=- tls=- cipher=- sni=- alpn=-\n"
        );
    }
}
