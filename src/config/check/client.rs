//! Addresses in the config: a listener's trusted proxies and a route's `ip_rules`.

use super::Checker;
use crate::config::model::{IpRule, ProxyProtocol};
use ipnet::IpNet;
use toml::Spanned;

impl Checker {
    /// A network (`10.0.0.0/8`, `2001:db8::/32`) or one address (`192.0.2.7`, `::1`).
    pub(super) fn network(&mut self, text: &Spanned<String>, field: &str) -> Option<IpNet> {
        match parse_network(text.get_ref()) {
            Some(net) if net.prefix_len() == 0 && field.ends_with("trusted_proxies") => {
                self.warn(
                    text.span(),
                    format!(
                        "{field}: {:?} trusts every address: any client can then choose the address it is known by",
                        text.get_ref()
                    ),
                );
                Some(net)
            }
            Some(net) => Some(net),
            None => {
                self.report(
                    text.span(),
                    format!(
                        "{field}: {:?} is not an address or a network in CIDR form (\"10.0.0.0/8\", \"2001:db8::/32\", \"192.0.2.7\")",
                        text.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A listener's `proxy_protocol` (`"required"`, `"optional"`) and its timeout.
    pub(super) fn proxy_protocol(
        &mut self,
        listener: &crate::config::file::ListenerFile,
        field: &str,
    ) -> Option<ProxyProtocol> {
        let timeout = self.duration(
            &listener.proxy_protocol_timeout,
            &format!("{field}.proxy_protocol_timeout"),
            ProxyProtocol::DEFAULT_TIMEOUT,
        );
        let mode = listener.proxy_protocol.as_ref()?;
        let required = self.word(
            mode,
            &format!("{field}.proxy_protocol"),
            &[("required", true), ("optional", false)],
        )?;
        Some(ProxyProtocol { required, timeout })
    }

    /// `ip_rules = ["allow 10.0.0.0/8", "deny all"]`, in order.
    pub(super) fn ip_rules(&mut self, rules: &[Spanned<String>], i: usize) -> Vec<IpRule> {
        let mut out = Vec::new();
        for rule in rules {
            let text = rule.get_ref().trim();
            let parsed = text
                .split_once(char::is_whitespace)
                .and_then(|(verb, what)| {
                    let allow = match verb {
                        "allow" => true,
                        "deny" => false,
                        _ => return None,
                    };
                    let nets = match what.trim() {
                        "all" => vec![
                            IpNet::V4(ipnet::Ipv4Net::default()),
                            IpNet::V6(ipnet::Ipv6Net::default()),
                        ],
                        net => vec![parse_network(net)?],
                    };
                    Some(nets.into_iter().map(move |net| IpRule { allow, net }))
                });
            match parsed {
                Some(rules) => out.extend(rules),
                None => self.report(
                    rule.span(),
                    format!(
                        "routes[{i}].ip_rules: {text:?} is not \"allow <network>\" or \"deny <network>\" (a network in CIDR form, one address, or all)"
                    ),
                ),
            }
        }
        out
    }
}

/// A CIDR network, or one address as the network of just itself; host bits must be zero.
fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(address) = text.parse::<std::net::IpAddr>() {
        return Some(IpNet::from(address));
    }
    let net = text.parse::<IpNet>().ok()?;
    // `10.0.0.1/8` is almost always a typo for one of two different things: refuse it.
    (net.trunc() == net).then_some(net)
}
