//! Who may reach a route, by address.

use ipnet::IpNet;
use std::time::Duration;

/// `proxy_protocol`: how a listener takes the PROXY protocol header (v1 or v2) an L4 balancer
/// sends before anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// Whether a connection without a header is refused (`required`) or served as is
    /// (`optional`).
    pub required: bool,
    /// How long the header may take to arrive (`proxy_protocol_timeout`).
    pub timeout: Duration,
}

impl ProxyProtocol {
    /// `proxy_protocol_timeout`'s default: HAProxy's and NGINX's are 5 s and 30 s; a
    /// balancer sends its header at once.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
}

/// One `ip_rules` entry: the addresses of `net` let in (`allow`) or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRule {
    /// Whether a client in `net` is let in.
    pub allow: bool,
    /// The addresses the rule covers (`all`: one rule per address family).
    pub net: IpNet,
}
