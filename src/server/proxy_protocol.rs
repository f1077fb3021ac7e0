//! The PROXY protocol (v1 and v2) on accepted connections: the header an L4 balancer
//! (HAProxy `send-proxy`, AWS NLB, ...) sends before anything else, naming the client it
//! accepted. Read exactly, never past its end, so TLS or HTTP starts on the very next byte.

use crate::config::ProxyProtocol;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Why a connection's header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// None arrived on a listener that requires one.
    #[error("no PROXY protocol header")]
    Missing,
    /// It was not a valid v1 or v2 header.
    #[error("invalid PROXY protocol header")]
    Invalid,
    /// It did not arrive in time.
    #[error("PROXY protocol header timed out")]
    Timeout,
    /// The connection failed or closed first.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longer than any v1 header (107 bytes) and any v2 header a balancer sends in practice (its
/// addresses and a few TLVs); a longer one is refused rather than buffered.
const MAX_HEADER: usize = 1024;

/// Reads the header `stream` starts with, under `mode`: the client address it names and the
/// address that client connected to, or
/// `None` when it names none (a `LOCAL` health check, `UNKNOWN`, or no header where one is
/// optional) and the connection's own peer stands.
pub async fn read(
    stream: &mut TcpStream,
    mode: ProxyProtocol,
) -> Result<Option<(SocketAddr, SocketAddr)>, HeaderError> {
    tokio::time::timeout(mode.timeout, read_header(stream, mode.required))
        .await
        .map_err(|_| HeaderError::Timeout)?
}

async fn read_header(
    stream: &mut TcpStream,
    required: bool,
) -> Result<Option<(SocketAddr, SocketAddr)>, HeaderError> {
    let mut buf = [0u8; MAX_HEADER];
    loop {
        // Peeked, not read: without a header (where it is optional) the bytes stay for HTTP.
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(HeaderError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        let seen = &buf[..n];
        let could_be = |prefix: &[u8]| prefix.starts_with(&seen[..n.min(prefix.len())]);
        if !could_be(V1_PREFIX) && !could_be(V2_SIGNATURE) {
            return if required {
                Err(HeaderError::Missing)
            } else {
                Ok(None)
            };
        }
        match parse(seen) {
            Parsed::Header { length, client } => {
                // Consumed now, into the buffer that held its peeked copy.
                stream.read_exact(&mut buf[..length]).await?;
                return Ok(client);
            }
            Parsed::Incomplete if n < MAX_HEADER => {
                // The rest is on its way: peek returns at once while anything is buffered,
                // so wait a moment rather than spin.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Parsed::Incomplete | Parsed::Invalid => return Err(HeaderError::Invalid),
        }
    }
}

/// What the bytes received so far hold.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A whole header of `length` bytes, naming `client` and the address it connected to
    /// (if it names them).
    Header {
        length: usize,
        client: Option<(SocketAddr, SocketAddr)>,
    },
    /// The start of one.
    Incomplete,
    /// Not a header.
    Invalid,
}

fn parse(bytes: &[u8]) -> Parsed {
    use ppp::PartialResult;
    use ppp::{HeaderResult, v1, v2};
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        return Parsed::Incomplete;
    }
    match result {
        HeaderResult::V1(Ok(header)) => Parsed::Header {
            length: header.header.len(),
            client: match header.addresses {
                v1::Addresses::Tcp4(a) => Some((
                    (a.source_address, a.source_port).into(),
                    (a.destination_address, a.destination_port).into(),
                )),
                v1::Addresses::Tcp6(a) => Some((
                    (a.source_address, a.source_port).into(),
                    (a.destination_address, a.destination_port).into(),
                )),
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(header)) => Parsed::Header {
            length: header.len(),
            client: match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => Some((
                    (a.source_address, a.source_port).into(),
                    (a.destination_address, a.destination_port).into(),
                )),
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => Some((
                    (a.source_address, a.source_port).into(),
                    (a.destination_address, a.destination_port).into(),
                )),
                _ => None,
            },
        },
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Parsed::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_headers_are_read_to_their_end_and_no_further() {
        let bytes = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(bytes),
            Parsed::Header {
                length: 45,
                client: Some((
                    "192.0.2.7:56324".parse().unwrap(),
                    "198.51.100.1:443".parse().unwrap()
                ))
            }
        );
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 443\r\n";
        assert!(
            matches!(parse(v6), Parsed::Header { client: Some(c), .. } if c.0.ip().is_ipv6() && c.1.port() == 443)
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                length: 15,
                client: None
            }
        );
        assert_eq!(parse(b"PROXY TCP4 192.0.2"), Parsed::Incomplete);
        assert_eq!(parse(b"PROXY TCP9 x y 1 2\r\n"), Parsed::Invalid);
    }

    #[test]
    fn v2_headers_name_the_source_unless_local() {
        let mut header = V2_SIGNATURE.to_vec();
        // PROXY command, TCP over IPv4, 12 bytes of addresses.
        header.extend_from_slice(&[0x21, 0x11, 0, 12]);
        header.extend_from_slice(&[192, 0, 2, 7, 198, 51, 100, 1]);
        header.extend_from_slice(&56324u16.to_be_bytes());
        header.extend_from_slice(&443u16.to_be_bytes());
        let mut with_data = header.clone();
        with_data.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            parse(&with_data),
            Parsed::Header {
                length: 28,
                client: Some((
                    "192.0.2.7:56324".parse().unwrap(),
                    "198.51.100.1:443".parse().unwrap()
                ))
            }
        );
        assert_eq!(parse(&header[..20]), Parsed::Incomplete);
        // LOCAL: the balancer's own health check; the peer stands.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(
            parse(&local),
            Parsed::Header {
                length: 16,
                client: None
            }
        );
    }
}
