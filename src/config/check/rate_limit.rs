//! A route's `[[routes.rate_limit]]` rules: the rate, the key, the scope, what to do when the
//! fleet's store is away.

use super::Checker;
use super::access::header_name;
use crate::config::file::RateLimitFile;
use crate::config::model::{LimitKey, LimitScope, OnStoreError, RateLimitConfig};
use std::time::Duration;
use toml::Spanned;

impl Checker {
    /// One rate-limit rule: `rate = "50/s"`, a burst, a key and a scope.
    pub(super) fn rate_limit(
        &mut self,
        rule: &Spanned<RateLimitFile>,
        field: &str,
    ) -> Option<RateLimitConfig> {
        let rule = rule.get_ref();
        let Some((count, period)) = parse_rate(rule.rate.get_ref()) else {
            self.report(
                rule.rate.span(),
                format!(
                    "{field}.rate: {:?} is not \"<requests>/<s|m|h>\" (\"50/s\", \"1000/m\")",
                    rule.rate.get_ref()
                ),
            );
            return None;
        };
        let (v4_prefix, v6_prefix) = self.prefixes(&rule.ipv4_prefix, &rule.ipv6_prefix, field);
        let key = match rule.key.as_ref().map(|k| k.get_ref().as_str()) {
            None | Some("client_ip") => LimitKey::ClientIp {
                v4_prefix,
                v6_prefix,
            },
            Some("route") => LimitKey::Route,
            Some(other) => match other.split_once(':') {
                Some(("header", name)) => match header_name(name) {
                    Some(name) => LimitKey::Header(name),
                    None => return self.bad_key(rule, field),
                },
                Some(("cookie", name)) if !name.is_empty() => LimitKey::Cookie(name.to_owned()),
                Some(("claim", name)) if !name.is_empty() => LimitKey::Claim(name.to_owned()),
                _ => return self.bad_key(rule, field),
            },
        };
        let scope = match &rule.scope {
            None => LimitScope::Local,
            Some(scope) => {
                let choices = [("local", LimitScope::Local), ("fleet", LimitScope::Fleet)];
                let chosen = self.word(scope, &format!("{field}.scope"), &choices)?;
                if chosen == LimitScope::Fleet {
                    self.fleet_rules.push((
                        scope.span(),
                        format!("{field}.scope: \"fleet\" shares the limit through the fleet's Redis: configure [fleet]"),
                    ));
                }
                chosen
            }
        };
        let on_store_error = match &rule.on_store_error {
            None => OnStoreError::Local,
            Some(value) => self.word(
                value,
                &format!("{field}.on_store_error"),
                &[
                    ("local", OnStoreError::Local),
                    ("allow", OnStoreError::Allow),
                    ("deny", OnStoreError::Deny),
                ],
            )?,
        };
        Some(RateLimitConfig {
            key,
            count,
            period,
            burst: self.int(&rule.burst, &format!("{field}.burst"), 0..=1_000_000, 0u32),
            scope,
            on_store_error,
            dry_run: rule.dry_run.unwrap_or(false),
            legacy_headers: rule.legacy_headers.unwrap_or(false),
        })
    }

    /// `ipv4_prefix` and `ipv6_prefix` of the table at `field`: the networks client addresses
    /// are cut to, /32 and /64 by default.
    pub(super) fn prefixes(
        &mut self,
        v4: &Option<Spanned<i64>>,
        v6: &Option<Spanned<i64>>,
        field: &str,
    ) -> (u8, u8) {
        (
            self.int(v4, &format!("{field}.ipv4_prefix"), 1..=32, 32u8),
            self.int(v6, &format!("{field}.ipv6_prefix"), 1..=128, 64u8),
        )
    }

    fn bad_key<T>(&mut self, rule: &RateLimitFile, field: &str) -> Option<T> {
        let key = rule.key.as_ref()?;
        self.report(key.span(), format!("{field}.key: {:?} is not client_ip, route, header:<name>, cookie:<name> or claim:<name>", key.get_ref()));
        None
    }
}

/// `50/s`, `1000/m`, `10/h` as (count, period).
fn parse_rate(text: &str) -> Option<(u32, Duration)> {
    let (count, unit) = text.trim().split_once('/')?;
    let count: u32 = count.trim().parse().ok().filter(|&c| c > 0)?;
    let period = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return None,
    };
    // Below one admission per nanosecond the interval cannot be represented.
    (period / count > Duration::ZERO).then_some((count, period))
}
