//! The PROXY protocol header a connection to a pool with `send_proxy_protocol` starts with:
//! the client's address and the one it connected to, in v1 (text) or v2 (binary). A
//! connection without a client (a health probe) says so: `UNKNOWN` in v1, `LOCAL` in v2, as
//! HAProxy's `check-send-proxy` does.

use crate::config::ProxyVersion;
use std::net::SocketAddr;

/// The addresses of the client connection a request came on, carried in the upstream
/// request's extensions to the connection that is opened for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddresses {
    /// The client's address and port.
    pub source: SocketAddr,
    /// The address and port it connected to.
    pub destination: SocketAddr,
}

/// The header for `client` (none: a connection of the proxy's own).
pub fn header(version: ProxyVersion, client: Option<&ClientAddresses>) -> Vec<u8> {
    // A client of one family talking to the other (an IPv4 client of a dual-stack listener)
    // is written with both addresses as IPv6.
    let pair = client.map(|c| match (c.source, c.destination) {
        (SocketAddr::V4(s), SocketAddr::V6(_)) => (
            SocketAddr::new(s.ip().to_ipv6_mapped().into(), s.port()),
            c.destination,
        ),
        (SocketAddr::V6(_), SocketAddr::V4(d)) => (
            c.source,
            SocketAddr::new(d.ip().to_ipv6_mapped().into(), d.port()),
        ),
        _ => (c.source, c.destination),
    });
    match version {
        ProxyVersion::V1 => match pair {
            Some((s, d)) => {
                let family = if s.is_ipv4() { "TCP4" } else { "TCP6" };
                format!(
                    "PROXY {family} {} {} {} {}\r\n",
                    s.ip(),
                    d.ip(),
                    s.port(),
                    d.port()
                )
                .into_bytes()
            }
            None => b"PROXY UNKNOWN\r\n".to_vec(),
        },
        ProxyVersion::V2 => {
            use ppp::v2::{Addresses, Builder, Command, Protocol, Version};
            let built = match pair {
                Some(pair) => {
                    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, pair)
                        .build()
                }
                None => Builder::with_addresses(
                    Version::Two | Command::Local,
                    Protocol::Unspecified,
                    Addresses::Unspecified,
                )
                .build(),
            };
            // Building into a Vec cannot fail.
            built.unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(source: &str, destination: &str) -> ClientAddresses {
        ClientAddresses {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        }
    }

    #[test]
    fn headers_parse_back_to_the_addresses_they_carry() {
        let c = client("192.0.2.7:5000", "198.51.100.1:443");
        assert_eq!(
            header(ProxyVersion::V1, Some(&c)),
            b"PROXY TCP4 192.0.2.7 198.51.100.1 5000 443\r\n"
        );
        let v2 = header(ProxyVersion::V2, Some(&c));
        let parsed = ppp::v2::Header::try_from(&v2[..]).unwrap();
        assert_eq!(parsed.command, ppp::v2::Command::Proxy);
        assert_eq!(
            parsed.addresses,
            ppp::v2::Addresses::from((c.source, c.destination))
        );
        let mixed = header(ProxyVersion::V1, Some(&client("192.0.2.7:1", "[::1]:2")));
        assert_eq!(mixed, b"PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n");
    }

    #[test]
    fn a_probe_names_no_client() {
        assert_eq!(header(ProxyVersion::V1, None), b"PROXY UNKNOWN\r\n");
        let v2 = header(ProxyVersion::V2, None);
        let parsed = ppp::v2::Header::try_from(&v2[..]).unwrap();
        assert_eq!(parsed.command, ppp::v2::Command::Local);
    }
}
