//! Checks of single values shared by every section: names, durations, integers, addresses,
//! paths relative to the config file.

use super::Checker;
use http::uri::Authority;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The longest duration any setting accepts.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Accepts `ip:port`, `[ipv6]:port` and `dns-name:port` with a non-zero port.
pub(super) fn parse_address(raw: &str) -> Option<Authority> {
    if raw.parse::<SocketAddr>().is_ok_and(|a| a.port() != 0) {
        return raw.parse().ok();
    }
    let (host, port) = raw.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    (port != 0 && is_dns_name(host))
        .then(|| raw.parse().ok())
        .flatten()
}

/// A name of a listener, route, pool, backend or service: 1 to 64 letters, digits, '-', '_' or
/// '.'. Safe in URLs, metric labels and Redis key names.
pub fn is_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether two sockets cannot both be bound: the same port, and the same address or a wildcard
/// one (`0.0.0.0` or `::`, which also takes the IPv4 port, as Linux binds dual-stack).
pub(super) fn binds_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Letters, digits and '-' in dot-separated labels of 1 to 63 characters, 253 at most in all.
pub(super) fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            // RFC 1123: letters, digits and hyphens, not at either end of a label.
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub(super) fn read_pem<T>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, rustls_pki_types::pem::Error>,
) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|err| format!("cannot read: {err}"))?;
    parse(&bytes).map_err(|err| match err {
        rustls_pki_types::pem::Error::NoItemsFound => {
            "no PEM block of the expected kind".to_owned()
        }
        other => format!("malformed PEM: {other}"),
    })
}

impl Checker {
    /// Reports each key that is set (its span given) but does not apply to this type of
    /// `what` (a probe or discovery type), which allows only `allowed`.
    pub(super) fn inapplicable<const N: usize>(
        &mut self,
        field: &str,
        what: &str,
        allowed: &[&str],
        set: [(&str, Option<Range<usize>>); N],
    ) {
        for (key, span) in set {
            if let Some(span) = span.filter(|_| !allowed.contains(&key)) {
                self.report(
                    span,
                    format!("{field}.{key}: does not apply to this {what} type"),
                );
            }
        }
    }

    pub(super) fn unique_names<'a>(
        &mut self,
        names: impl Iterator<Item = &'a Spanned<String>>,
        field: &str,
        what: &str,
    ) {
        let mut seen = HashSet::new();
        for name in names {
            if !seen.insert(name.get_ref().as_str()) {
                self.report(
                    name.span(),
                    format!("{field}.name: duplicate {what} name {:?}", name.get_ref()),
                );
            }
        }
    }

    pub(super) fn name(&mut self, name: &Spanned<String>, field: &str) {
        let value = name.get_ref();
        if !is_name(value) {
            self.report(
                name.span(),
                format!(
                    "{field}: {value:?} is not a valid name (1 to 64 of letters, digits, '-', '_', '.')"
                ),
            );
        }
    }

    pub(super) fn duration(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Duration {
        self.duration_from(value, field, default, false)
    }

    /// A duration that may be zero (`"0s"`: off).
    pub(super) fn duration_or_zero(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Duration {
        self.duration_from(value, field, default, true)
    }

    pub(super) fn duration_from(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
        zero_allowed: bool,
    ) -> Duration {
        let Some(value) = value else { return default };
        match crate::config::duration::parse_duration(value.get_ref()) {
            Ok(d) if d.is_zero() && !zero_allowed => {
                self.report(value.span(), format!("{field}: must be greater than zero"));
                default
            }
            // Bounded so that adding any configured duration to a clock reading cannot overflow.
            Ok(d) if d > MAX_DURATION => {
                self.report(
                    value.span(),
                    format!(
                        "{field}: must be at most 365 days, not {:?}",
                        value.get_ref()
                    ),
                );
                default
            }
            Ok(d) => d,
            Err(err) => {
                self.report(value.span(), format!("{field}: {err}"));
                default
            }
        }
    }

    /// An optional count that must be at least 1.
    pub(super) fn at_least_one(
        &mut self,
        value: &Option<Spanned<i64>>,
        field: &str,
    ) -> Option<NonZeroU32> {
        let value = value.as_ref()?;
        let max = u32::try_from(*value.get_ref())
            .ok()
            .and_then(NonZeroU32::new);
        if max.is_none() {
            self.report(
                value.span(),
                format!("{field}: must be at least 1, got {}", value.get_ref()),
            );
        }
        max
    }

    /// An optional integer within `range`, or `default`.
    pub(super) fn int<T: TryFrom<i64> + Copy>(
        &mut self,
        value: &Option<Spanned<i64>>,
        field: &str,
        range: RangeInclusive<i64>,
        default: T,
    ) -> T {
        let Some(value) = value else { return default };
        let n = *value.get_ref();
        match T::try_from(n) {
            Ok(v) if range.contains(&n) => v,
            _ => {
                self.report(
                    value.span(),
                    format!(
                        "{field}: must be between {} and {}, got {n}",
                        range.start(),
                        range.end()
                    ),
                );
                default
            }
        }
    }

    pub(super) fn bad<T>(
        &mut self,
        at: &Spanned<String>,
        field: &str,
        key: &str,
        reason: &str,
    ) -> Option<T> {
        let path = self.resolve(at.get_ref());
        self.report(
            at.span(),
            format!("{field}.{key}: {}: {reason}", path.display()),
        );
        None
    }

    /// One of `choices`' words: its value, or a problem listing the words
    /// (`field: "x" is not "a", "b" or "c"`).
    pub(super) fn word<T: Copy>(
        &mut self,
        value: &Spanned<String>,
        field: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let text = value.get_ref();
        if let Some((_, chosen)) = choices.iter().find(|(word, _)| word == text) {
            return Some(*chosen);
        }
        let words: Vec<String> = choices
            .iter()
            .map(|(word, _)| format!("{word:?}"))
            .collect();
        let listed = match words.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        self.report(value.span(), format!("{field}: {text:?} is not {listed}"));
        None
    }

    /// A path from the file, relative to the config file's directory.
    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        self.base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ip_and_dns_addresses_with_ports() {
        assert!(parse_address("127.0.0.1:80").is_some());
        assert!(parse_address("[::1]:8080").is_some());
        assert!(parse_address("api.internal:8080").is_some());
        assert!(parse_address("api.internal").is_none());
        assert!(parse_address("127.0.0.1:0").is_none());
        assert!(parse_address("bad host:80").is_none());
        assert!(parse_address("http://x:80").is_none());
    }
}
