//! Who the client is and whether a route lets it in: the address behind trusted proxies
//! (`X-Forwarded-For`, else `Forwarded`, read right to left), and a route's `ip_rules`.

use crate::config::IpRule;
use http::HeaderMap;
use http::header::FORWARDED;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Whether `rules` let `client` in: the first rule whose network holds it decides; none
/// matching lets it in (NGINX's `allow`/`deny`: end with `deny all` for an allow list).
pub fn admits(rules: &[IpRule], client: IpAddr) -> bool {
    let client = client.to_canonical();
    rules
        .iter()
        .find(|rule| rule.net.contains(&client))
        .is_none_or(|rule| rule.allow)
}

/// Whether `address` is one of the `trusted` proxies.
pub fn is_trusted(trusted: &[IpNet], address: IpAddr) -> bool {
    let address = address.to_canonical();
    trusted.iter().any(|net| net.contains(&address))
}

/// The client of a request that a trusted proxy sent: walking the hops its proxies recorded
/// from the nearest, the first address that is not a trusted proxy. When every hop is trusted,
/// the farthest; `None` when the request names no valid hop. A hop that cannot be read ends the
/// walk at the last address read, so a forged or garbled entry is never believed.
pub fn behind_proxies(headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let (name, parse): (_, fn(&str) -> Option<IpAddr>) = if headers.contains_key(X_FORWARDED_FOR) {
        (X_FORWARDED_FOR, parse_forwarded_for)
    } else {
        (FORWARDED, parse_forwarded_element)
    };
    // Nearest first: the last line's last entry, walked in place. A line that is not text is
    // read as one empty entry, which is no address and ends the walk.
    let hops = headers
        .get_all(name)
        .into_iter()
        .rev()
        .flat_map(|line| line.to_str().unwrap_or("").rsplit(',').map(parse));
    let mut client = None;
    for hop in hops {
        let Some(address) = hop else { break };
        client = Some(address);
        if !is_trusted(trusted, address) {
            break;
        }
    }
    client
}

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`).
fn parse_forwarded_for(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
}

/// The `for=` of one `Forwarded` element (RFC 7239): `for=192.0.2.60`,
/// `for="[2001:db8:cafe::17]:4711"`; `unknown` and obfuscated names are no address.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })?;
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    if let Some(bracketed) = value.strip_prefix('[') {
        let (address, _) = bracketed.split_once(']')?;
        return address.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    parse_forwarded_for(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        let h = headers(&[("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.1.1.1")]);
        // 198.51.100.7 may be forged by 203.0.113.9: never the leftmost.
        assert_eq!(behind_proxies(&h, &trusted), Some(ip("203.0.113.9")));
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "10.2.2.2, 2001:db8::5"),
        ]);
        assert_eq!(behind_proxies(&h, &trusted), Some(ip("203.0.113.9")));
    }

    #[test]
    fn all_hops_trusted_gives_the_farthest_and_garbage_stops_the_walk() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.2")]);
        assert_eq!(behind_proxies(&h, &trusted), Some(ip("10.0.0.3")));
        let h = headers(&[("x-forwarded-for", "203.0.113.9, nonsense, 10.0.0.2")]);
        assert_eq!(behind_proxies(&h, &trusted), Some(ip("10.0.0.2")));
        assert_eq!(behind_proxies(&HeaderMap::new(), &trusted), None);
        let mut h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        h.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff1.2.3.4").unwrap(),
        );
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        assert_eq!(behind_proxies(&h, &trusted), Some(ip("10.0.0.2")));
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[(
            "forwarded",
            "for=198.51.100.7;proto=https, For=\"[2001:db8:cafe::17]:4711\", for=10.0.0.1:80",
        )]);
        assert_eq!(behind_proxies(&h, &trusted), Some(ip("2001:db8:cafe::17")));
        let h = headers(&[("forwarded", "for=unknown, for=10.0.0.1")]);
        assert_eq!(behind_proxies(&h, &trusted), Some(ip("10.0.0.1")));
        let h = headers(&[("x-forwarded-for", "203.0.113.9:5555")]);
        assert_eq!(behind_proxies(&h, &trusted), Some(ip("203.0.113.9")));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rule = |allow, net: &str| IpRule {
            allow,
            net: net.parse().unwrap(),
        };
        let rules = [
            rule(false, "10.1.0.0/16"),
            rule(true, "10.0.0.0/8"),
            rule(true, "2001:db8::/32"),
            rule(false, "0.0.0.0/0"),
            rule(false, "::/0"),
        ];
        assert!(!admits(&rules, ip("10.1.2.3")));
        assert!(admits(&rules, ip("10.2.2.3")));
        assert!(admits(&rules, ip("2001:db8::1")));
        assert!(!admits(&rules, ip("192.0.2.1")));
        assert!(!admits(&rules, ip("2001:db9::1")));
        // An IPv4 client on a dual-stack socket is still an IPv4 client.
        assert!(admits(&rules, ip("::ffff:10.2.2.3")));
        assert!(!admits(&rules, ip("::ffff:10.1.2.3")));
        assert!(admits(&[], ip("192.0.2.1")));
    }
}
