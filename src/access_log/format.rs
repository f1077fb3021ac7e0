//! Access log line formats: JSON written directly, and NGINX's combined format followed by the
//! proxy's own fields as `key=value` pairs.

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
}

impl LineFormat {
    pub(super) fn new(format: AccessLogFormat) -> Self {
        Self {
            format,
            second: u64::MAX,
            date: String::new(),
        }
    }

    /// Appends one line for `record` to `out`.
    pub(super) fn write(&mut self, record: &Record, out: &mut Vec<u8>) {
        match self.format {
            AccessLogFormat::Json => self.json(record, out),
            AccessLogFormat::Combined => self.combined(record, out),
        }
        out.push(b'\n');
    }

    fn json(&mut self, record: &Record, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        self.time(record.time, out);
        out.extend_from_slice(b"\",\"client\":");
        json_str(out, record.client.to_str().unwrap_or("-"));
        out.extend_from_slice(b",\"method\":");
        json_str(out, record.method.as_str());
        out.extend_from_slice(b",\"path\":");
        json_str(out, record.uri.path());
        out.extend_from_slice(b",\"status\":");
        integer(out, record.status.as_u16());
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

    /// NGINX's "combined" fields, then the proxy's own as key=value pairs.
    fn combined(&mut self, record: &Record, out: &mut Vec<u8>) {
        let text = |out: &mut Vec<u8>, value: Option<&str>| {
            out.extend_from_slice(value.unwrap_or("-").as_bytes());
        };
        text(out, record.client.to_str().ok());
        out.extend_from_slice(b" - - [");
        self.time(record.time, out);
        out.extend_from_slice(b"] \"");
        text(out, Some(record.method.as_str()));
        out.push(b' ');
        text(out, Some(record.uri.path()));
        out.extend_from_slice(b"\" ");
        integer(out, record.status.as_u16());
        out.push(b' ');
        integer(out, record.bytes_out);
        out.extend_from_slice(b" bytes_in=");
        integer(out, record.bytes_in);
        out.extend_from_slice(b" duration_ms=");
        millis(out, record.total);
        out.extend_from_slice(b" upstream_ms=");
        match record.upstream {
            Some(upstream) => millis(out, upstream),
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" route=");
        text(out, record.route.as_deref());
        out.extend_from_slice(b" pool=");
        text(out, record.pool.as_deref());
        out.extend_from_slice(b" backend=");
        text(out, record.backend.as_deref());
        out.extend_from_slice(b" retries=");
        integer(out, record.retries);
        out.extend_from_slice(b" request_id=");
        text(out, record.request_id.to_str().ok());
        out.extend_from_slice(b" grpc_status=");
        match record.grpc_status {
            Some(status) => integer(out, status),
            None => out.push(b'-'),
        }
        let tls = record.tls.as_deref();
        out.extend_from_slice(b" tls=");
        text(out, tls.map(|t| t.version));
        out.extend_from_slice(b" cipher=");
        text(out, tls.map(|t| t.cipher));
        out.extend_from_slice(b" sni=");
        text(out, tls.and_then(|t| t.sni.as_deref()));
        out.extend_from_slice(b" alpn=");
        text(out, tls.and_then(|t| t.alpn));
    }

    /// RFC 3339 in UTC with milliseconds: `2026-11-21T22:11:26.925Z`.
    fn time(&mut self, time: SystemTime, out: &mut Vec<u8>) {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since_epoch.as_secs();
        if second != self.second {
            self.second = second;
            self.date = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(second))
                .to_string();
            self.date.pop(); // the `Z`, written after the milliseconds
        }
        out.extend_from_slice(self.date.as_bytes());
        out.push(b'.');
        three_digits(out, since_epoch.subsec_millis());
        out.push(b'Z');
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

fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A duration in milliseconds with three decimals (microsecond resolution): `1.219`.
fn millis(out: &mut Vec<u8>, duration: Duration) {
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
            method: Method::GET,
            uri: "/a/b?secret=1".parse().unwrap(),
            status: StatusCode::OK,
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
                "time": "2026-11-21T22:11:26.925Z", "client": "127.0.0.1", "method": "GET",
                "path": "/a/b", "status": 200, "bytes_in": 0, "bytes_out": 21,
                "duration_ms": 1.219, "upstream_ms": 0.05, "route": "web", "pool": "web",
                "backend": null, "retries": 1, "request_id": "req-\"1\\", "grpc_status": null, "tls": null
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
        let mut formatter = LineFormat::new(AccessLogFormat::Combined);
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
        assert!(text.contains("[2026-11-21T22:11:26.925Z]"), "{text}");
        assert!(text.contains("[2026-11-21T22:12:01.025Z]"), "{text}");
    }

    #[test]
    fn combined_lines_follow_nginx_then_key_values() {
        assert_eq!(
            line(AccessLogFormat::Combined),
            "127.0.0.1 - - [2026-11-21T22:11:26.925Z] \"GET /a/b\" 200 21 bytes_in=0 \
             duration_ms=1.219 upstream_ms=0.050 route=web pool=web backend=- retries=1 \
             request_id=req-\"1\\ grpc_status=- tls=- cipher=- sni=- alpn=-\n"
        );
    }
}
