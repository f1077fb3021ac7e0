//! Who may reach a route, by address.

use ipnet::IpNet;

/// One `ip_rules` entry: the addresses of `net` let in (`allow`) or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRule {
    /// Whether a client in `net` is let in.
    pub allow: bool,
    /// The addresses the rule covers (`all`: one rule per address family).
    pub net: IpNet,
}
