//! The settings of the algorithms that have some: a hashing pool's `[pools.hash]` (the key a
//! request is hashed by, the load bound, the table), a least-latency pool's decay, and a
//! pool's sticky sessions.

use super::Checker;
use super::access::header_name;
use crate::config::file::PoolFile;
use crate::config::model::{Algorithm, HashConfig, HashKey, HashLayout, PoolConfig, StickyConfig};
use std::num::NonZeroU16;
use std::time::Duration;
use toml::Spanned;

/// Bytes a sticky secret holds at least (HMAC-SHA256's block of entropy).
const MIN_SECRET: usize = 32;

impl Checker {
    /// `[pools.sticky]`: the secrets read now (and again at each reload).
    pub(super) fn sticky(&mut self, pool: &PoolFile, field: &str) -> Option<StickyConfig> {
        let spanned = pool.sticky.as_ref()?;
        let file = spanned.get_ref();
        let field = format!("{field}.sticky");
        let fleet = file.fleet_secret.as_ref().filter(|f| *f.get_ref());
        match (&file.secret_file, fleet) {
            (Some(_), Some(fleet)) => self.report(
                fleet.span(),
                format!("{field}: either secret_file or fleet_secret = true, not both"),
            ),
            (None, None) => self.report(
                spanned.span(),
                format!("{field}: needs secret_file, or fleet_secret = true (the key in the fleet's Redis)"),
            ),
            _ => {}
        }
        if let Some(fleet) = fleet {
            self.fleet_rules.push((
                fleet.span(),
                format!(
                    "{field}.fleet_secret: the key is kept in the fleet's Redis: configure [fleet]"
                ),
            ));
            if let Some(previous) = &file.previous_secret_file {
                self.report(
                    previous.span(),
                    format!("{field}.previous_secret_file: the fleet's key rotates through POST /api/sticky/rotate"),
                );
            }
        }
        let fleet_secret = fleet.is_some();
        let mut secrets = Vec::new();
        for (name, path) in [
            ("secret_file", file.secret_file.as_ref()),
            ("previous_secret_file", file.previous_secret_file.as_ref()),
        ] {
            let Some(path) = path else { continue };
            match std::fs::read(self.resolve(path.get_ref())) {
                Ok(bytes) if bytes.trim_ascii().len() >= MIN_SECRET => {
                    secrets.push(bytes.trim_ascii().to_vec());
                }
                Ok(_) => self.report(
                    path.span(),
                    format!("{field}.{name}: the secret must be at least {MIN_SECRET} bytes"),
                ),
                Err(err) => self.report(path.span(), format!("{field}.{name}: {err}")),
            }
        }
        let cookie = file
            .cookie
            .as_ref()
            .map_or("sy_backend", |c| c.get_ref().as_str());
        if cookie.is_empty()
            || !cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            if let Some(value) = &file.cookie {
                self.report(
                    value.span(),
                    format!(
                        "{field}.cookie: {cookie:?} is not a cookie name (letters, digits, - _ .)"
                    ),
                );
            }
        }
        let optional = |checker: &mut Self, value: &Option<Spanned<String>>, name: &str| {
            value
                .as_ref()
                .map(|_| checker.duration(value, &format!("{field}.{name}"), Duration::ZERO))
                .filter(|d| !d.is_zero())
        };
        let max_life = optional(self, &file.max_life, "max_life");
        let max_idle = optional(self, &file.max_idle, "max_idle");
        let expected = usize::from(file.secret_file.is_some())
            + usize::from(file.previous_secret_file.is_some());
        (secrets.len() == expected && (fleet_secret || expected > 0)).then(|| StickyConfig {
            cookie: cookie.to_owned(),
            secrets,
            max_life,
            max_idle,
            path: file
                .path
                .as_ref()
                .map_or("/".to_owned(), |p| p.get_ref().clone()),
            domain: file.domain.as_ref().map(|d| d.get_ref().clone()),
            secure: file.secure.unwrap_or(true),
            fleet_secret,
        })
    }

    /// `latency_decay`: 10 s by default, 100 ms to 10 min, only for `least_latency` pools.
    pub(super) fn latency_decay(
        &mut self,
        pool: &PoolFile,
        algorithm: Algorithm,
        field: &str,
    ) -> Duration {
        let default = PoolConfig::DEFAULT_LATENCY_DECAY;
        let Some(value) = &pool.latency_decay else {
            return default;
        };
        let field = format!("{field}.latency_decay");
        if algorithm != Algorithm::LeastLatency {
            self.report(
                value.span(),
                format!(
                    "{field}: only for algorithm = \"least_latency\" (this pool balances by {})",
                    algorithm.as_str()
                ),
            );
            return default;
        }
        let decay = self.duration(&pool.latency_decay, &field, default);
        if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&decay) {
            self.report(
                value.span(),
                format!("{field}: {decay:?} is outside 100ms..10m"),
            );
        }
        decay
    }

    /// The hashing settings of a pool balancing by `algorithm`: `None` unless it hashes.
    pub(super) fn hash(
        &mut self,
        pool: &PoolFile,
        algorithm: Algorithm,
        field: &str,
    ) -> Option<HashConfig> {
        let file = pool.hash.as_ref();
        if algorithm != Algorithm::Hash {
            if let Some(file) = file {
                self.report(
                    file.span(),
                    format!(
                        "{field}.hash: only for algorithm = \"hash\" (this pool balances by {})",
                        algorithm.as_str()
                    ),
                );
            }
            return None;
        }
        let Some(file) = file.map(|f| f.get_ref()) else {
            return Some(HashConfig {
                key: HashKey::ClientIp {
                    v4_prefix: 32,
                    v6_prefix: 64,
                },
                balance_factor: None,
                layout: HashLayout::Maglev,
            });
        };
        let (v4_prefix, v6_prefix) = self.prefixes(
            &file.ipv4_prefix,
            &file.ipv6_prefix,
            &format!("{field}.hash"),
        );
        let key = match &file.key {
            None => HashKey::ClientIp {
                v4_prefix,
                v6_prefix,
            },
            Some(key) => {
                let field = format!("{field}.hash.key");
                let parsed = match key.get_ref().as_str() {
                    "client_ip" => Some(HashKey::ClientIp {
                        v4_prefix,
                        v6_prefix,
                    }),
                    "path" => Some(HashKey::Path),
                    text => match text.split_once(':') {
                        Some(("header", name)) => header_name(name).map(HashKey::Header),
                        Some(("cookie", name)) if !name.is_empty() => {
                            Some(HashKey::Cookie(name.to_owned()))
                        }
                        Some(("query", name)) if !name.is_empty() => {
                            Some(HashKey::Query(name.to_owned()))
                        }
                        Some(("path_regex", source)) => {
                            let pattern = self.pattern_at(source, key.span(), &field)?;
                            if pattern.0.captures_len() < 2 {
                                self.report(
                                    key.span(),
                                    format!("{field}: {source:?} has no capture group; the first one is the key"),
                                );
                                return None;
                            }
                            Some(HashKey::PathRegex(pattern))
                        }
                        _ => None,
                    },
                };
                let Some(parsed) = parsed else {
                    self.report(
                        key.span(),
                        format!(
                            "{field}: {:?} is not client_ip, path, header:<name>, cookie:<name>, query:<name> or path_regex:<regex>",
                            key.get_ref()
                        ),
                    );
                    return None;
                };
                parsed
            }
        };
        let factor: u16 = self.int(
            &file.balance_factor,
            &format!("{field}.hash.balance_factor"),
            0..=10_000,
            0u16,
        );
        if let (1..=100, Some(value)) = (factor, &file.balance_factor) {
            self.report(
                value.span(),
                format!(
                    "{field}.hash.balance_factor: {factor} would refuse a backend its own share; above 100 (125: up to 25 % above it) or 0 for no bound"
                ),
            );
        }
        let layout = match &file.table {
            None => HashLayout::Maglev,
            Some(table) => self.word(
                table,
                &format!("{field}.hash.table"),
                &[("maglev", HashLayout::Maglev), ("ring", HashLayout::Ring)],
            )?,
        };
        Some(HashConfig {
            key,
            balance_factor: NonZeroU16::new(factor).filter(|f| f.get() > 100),
            layout,
        })
    }
}
