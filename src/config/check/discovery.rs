//! Discovery (DNS, Redis registry) and fleet mode.

use super::Checker;
use super::values::{is_dns_name, is_name};
use crate::config::file::{DiscoveryFile, DiscoveryKindFile, FleetFile};
use crate::config::model::{DiscoveryConfig, DiscoverySource, FleetConfig};
use std::net::{IpAddr, SocketAddr};
use toml::Spanned;

/// `host:pid`: unique among replicas on one host, and the same for the life of the process.
pub(super) fn default_replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "switchyard".to_owned());
    format!("{host}:{}", std::process::id())
}

impl Checker {
    pub(super) fn discovery(
        &mut self,
        file: &DiscoveryFile,
        field: &str,
    ) -> Option<DiscoveryConfig> {
        let kind = *file.kind.get_ref();
        let allowed: &[&str] = match kind {
            DiscoveryKindFile::Dns => &["name", "port", "resolver"],
            DiscoveryKindFile::DnsSrv => &["name", "resolver"],
            DiscoveryKindFile::Redis => &["url", "service"],
        };
        let set = [
            ("name", file.name.as_ref().map(Spanned::span)),
            ("port", file.port.as_ref().map(Spanned::span)),
            ("resolver", file.resolver.as_ref().map(Spanned::span)),
            ("url", file.url.as_ref().map(Spanned::span)),
            ("service", file.service.as_ref().map(Spanned::span)),
        ];
        self.inapplicable(field, "discovery", allowed, set);
        let refresh = self.duration(
            &file.refresh,
            &format!("{field}.refresh"),
            DiscoveryConfig::DEFAULT_REFRESH,
        );
        let drain_timeout = self.duration_or_zero(
            &file.drain_timeout,
            &format!("{field}.drain_timeout"),
            DiscoveryConfig::DEFAULT_DRAIN_TIMEOUT,
        );
        let source = match kind {
            DiscoveryKindFile::Dns => DiscoverySource::Dns {
                name: self.dns_name(file, field, false)?,
                port: self.required_port(file, field)?,
                resolver: self.resolver(file, field),
            },
            DiscoveryKindFile::DnsSrv => DiscoverySource::DnsSrv {
                name: self.dns_name(file, field, true)?,
                resolver: self.resolver(file, field),
            },
            DiscoveryKindFile::Redis => DiscoverySource::Redis {
                url: self.redis_url(file.url.as_ref(), &format!("{field}.url"), &file.kind)?,
                service: self.service(file, field)?,
            },
        };
        Some(DiscoveryConfig {
            source,
            refresh,
            drain_timeout,
        })
    }

    pub(super) fn fleet(&mut self, file: &FleetFile) -> Option<FleetConfig> {
        let redis = self.redis_url(Some(&file.redis), "fleet.redis", &file.redis)?;
        let replica = match &file.replica {
            Some(name)
                if !name.get_ref().is_empty() && !name.get_ref().contains(char::is_control) =>
            {
                name.get_ref().clone()
            }
            Some(name) => {
                self.report(
                    name.span(),
                    "fleet.replica: must be a non-empty name without control characters".into(),
                );
                return None;
            }
            None => default_replica_name(),
        };
        Some(FleetConfig { redis, replica })
    }

    pub(super) fn dns_name(
        &mut self,
        file: &DiscoveryFile,
        field: &str,
        srv: bool,
    ) -> Option<String> {
        let Some(name) = &file.name else {
            self.report(
                file.kind.span(),
                format!("{field}.name: required for DNS discovery"),
            );
            return None;
        };
        let raw = name.get_ref().trim_end_matches('.');
        // SRV names start with `_service._proto` labels.
        let plain: Vec<&str> = raw
            .split('.')
            .map(|label| {
                if srv {
                    label.strip_prefix('_').unwrap_or(label)
                } else {
                    label
                }
            })
            .collect();
        if is_dns_name(&plain.join(".")) && (!srv || raw.starts_with('_')) {
            Some(raw.to_ascii_lowercase())
        } else {
            let expected = if srv {
                "an SRV name such as \"_http._tcp.api.internal\""
            } else {
                "a DNS name"
            };
            self.report(
                name.span(),
                format!("{field}.name: {:?} is not {expected}", name.get_ref()),
            );
            None
        }
    }

    pub(super) fn required_port(&mut self, file: &DiscoveryFile, field: &str) -> Option<u16> {
        if file.port.is_none() {
            self.report(
                file.kind.span(),
                format!("{field}.port: required for type \"dns\""),
            );
            return None;
        }
        // Zero is out of range: `int` has reported it.
        let port: u16 = self.int(&file.port, &format!("{field}.port"), 1..=65535, 0);
        (port != 0).then_some(port)
    }

    /// `ip` or `ip:port` (53 when not given).
    pub(super) fn resolver(&mut self, file: &DiscoveryFile, field: &str) -> Option<SocketAddr> {
        let raw = file.resolver.as_ref()?;
        let text = raw.get_ref();
        let parsed = text.parse::<SocketAddr>().ok().or_else(|| {
            text.parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        if parsed.is_none() {
            self.report(
                raw.span(),
                format!("{field}.resolver: {text:?} is not an IP address, with or without a port"),
            );
        }
        parsed
    }

    pub(super) fn redis_url<T>(
        &mut self,
        url: Option<&Spanned<String>>,
        field: &str,
        missing_at: &Spanned<T>,
    ) -> Option<String> {
        let Some(url) = url else {
            self.report(missing_at.span(), format!("{field}: required"));
            return None;
        };
        let text = url.get_ref();
        if text.starts_with("redis://") && redis::Client::open(text.as_str()).is_ok() {
            Some(text.clone())
        } else {
            self.report(
                url.span(),
                format!("{field}: {text:?} is not a redis:// URL (redis://host:port/db)"),
            );
            None
        }
    }

    pub(super) fn service(&mut self, file: &DiscoveryFile, field: &str) -> Option<String> {
        let Some(service) = &file.service else {
            self.report(
                file.kind.span(),
                format!("{field}.service: required for type \"redis\""),
            );
            return None;
        };
        let name = service.get_ref();
        // The name is part of Redis key names: no separator, no glob characters.
        if !is_name(name) {
            self.report(
                service.span(),
                format!("{field}.service: {name:?} is not a service name (1 to 64 of letters, digits, '-', '_', '.')"),
            );
            return None;
        }
        Some(name.clone())
    }
}
