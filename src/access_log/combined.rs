//! NGINX's `combined` log format, exactly:
//! `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
//! "$http_referer" "$http_user_agent"`, and the `extended` format: that line followed by the
//! proxy's own fields as `key=value` pairs.

use super::Record;
use super::format::{LineFormat, integer, millis, protocol};

impl LineFormat {
    /// NGINX's combined line, with its escaping of quoted fields.
    pub(super) fn combined(&mut self, record: &Record, out: &mut Vec<u8>) {
        self.cache_second(record.time);
        out.extend_from_slice(record.client.as_bytes());
        out.extend_from_slice(b" - - [");
        out.extend_from_slice(self.local.as_bytes());
        out.extend_from_slice(b"] \"");
        out.extend_from_slice(record.method.as_str().as_bytes());
        out.push(b' ');
        // `$request` as NGINX logs it: the target as received; HTTP/2 has no request line, and
        // NGINX writes its path and query (origin form), not the URI built from pseudo-headers.
        match record.uri.path_and_query() {
            Some(target)
                if record.version >= http::Version::HTTP_2 || record.uri.scheme().is_none() =>
            {
                escaped(out, target.as_str().as_bytes());
            }
            _ => escaped(out, record.uri.to_string().as_bytes()),
        }
        out.push(b' ');
        out.extend_from_slice(protocol(record.version).as_bytes());
        out.extend_from_slice(b"\" ");
        integer(out, record.status.as_u16());
        out.push(b' ');
        integer(out, record.bytes_out);
        for value in [&record.referer, &record.user_agent] {
            out.extend_from_slice(b" \"");
            match value {
                Some(value) => escaped(out, value.as_bytes()),
                None => out.push(b'-'),
            }
            out.push(b'"');
        }
    }

    /// The proxy's own fields after the combined line.
    pub(super) fn extended(&mut self, record: &Record, out: &mut Vec<u8>) {
        let text = |out: &mut Vec<u8>, value: Option<&str>| {
            out.extend_from_slice(value.unwrap_or("-").as_bytes());
        };
        out.extend_from_slice(b" host=");
        text(out, record.host());
        out.extend_from_slice(b" upstream_status=");
        match record.upstream_status {
            Some(status) => integer(out, status),
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" upstream_error=");
        text(out, record.upstream_error);
        out.extend_from_slice(b" bytes_in=");
        integer(out, record.bytes_in);
        out.extend_from_slice(b" duration_ms=");
        millis(out, record.total);
        out.extend_from_slice(b" upstream_ms=");
        match record.upstream {
            Some(upstream) => millis(out, upstream),
            None => out.push(b'-'),
        }
        for (key, value) in [
            (&b" route="[..], &record.route),
            (b" pool=", &record.pool),
            (b" backend=", &record.backend),
        ] {
            out.extend_from_slice(key);
            text(out, value.as_deref());
        }
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
}

/// NGINX's escaping of logged values: `"`, `\`, control and non-ASCII bytes as `\xHH`.
fn escaped(out: &mut Vec<u8>, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in value {
        if !(0x20..0x7f).contains(&byte) || byte == b'"' || byte == b'\\' {
            out.extend_from_slice(&[
                b'\\',
                b'x',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]);
        } else {
            out.push(byte);
        }
    }
}
