//! Active health checks: probe kinds, paths, expected statuses, thresholds.

use super::Checker;
use crate::config::file::{HealthCheckFile, InitialStateFile, ProbeKindFile};
use crate::config::model::{HealthCheckConfig, InitialState, Probe};
use std::num::NonZeroU32;
use toml::Spanned;

impl Checker {
    pub(super) fn health_check(
        &mut self,
        file: &HealthCheckFile,
        field: &str,
    ) -> Option<HealthCheckConfig> {
        let interval = self.duration(
            &file.interval,
            &format!("{field}.interval"),
            HealthCheckConfig::DEFAULT_INTERVAL,
        );
        let timeout = self.duration(
            &file.timeout,
            &format!("{field}.timeout"),
            HealthCheckConfig::DEFAULT_TIMEOUT,
        );
        if let Some(t) = &file.timeout {
            if timeout > interval {
                self.report(
                    t.span(),
                    format!("{field}.timeout: must not exceed the interval ({interval:?})"),
                );
            }
        }
        let kind = file
            .kind
            .as_ref()
            .map_or(ProbeKindFile::Http, |k| *k.get_ref());
        let allowed: &[&str] = match kind {
            ProbeKindFile::Http => &["method", "path", "expected_status", "host"],
            ProbeKindFile::Tcp => &[],
            ProbeKindFile::Grpc => &["host", "service"],
        };
        let set = [
            ("method", &file.method),
            ("path", &file.path),
            ("expected_status", &file.expected_status),
            ("host", &file.host),
            ("service", &file.service),
        ]
        .map(|(key, value)| (key, value.as_ref().map(Spanned::span)));
        self.inapplicable(field, "probe", allowed, set);
        let probe = match kind {
            ProbeKindFile::Tcp => Probe::Tcp,
            ProbeKindFile::Grpc => Probe::Grpc {
                service: file
                    .service
                    .as_ref()
                    .map_or_else(String::new, |s| s.get_ref().clone()),
            },
            ProbeKindFile::Http => Probe::Http {
                method: self.method(&file.method, &format!("{field}.method")),
                path: self.probe_path(&file.path, &format!("{field}.path")),
                expected_status: self
                    .status_ranges(&file.expected_status, &format!("{field}.expected_status")),
                host: file.host.as_ref().and_then(|host| {
                    // Sent as the probe's Host header: it must be one.
                    let valid = host.get_ref().parse::<http::uri::Authority>().is_ok()
                        && !host.get_ref().contains(['@', '/']);
                    if !valid {
                        self.report(
                            host.span(),
                            format!(
                                "{field}.host: {:?} is not a host name (with an optional :port) to send as Host",
                                host.get_ref()
                            ),
                        );
                    }
                    valid.then(|| host.get_ref().clone())
                }),
            },
        };
        Some(HealthCheckConfig {
            probe,
            interval,
            timeout,
            healthy_threshold: self.threshold(
                &file.healthy_threshold,
                &format!("{field}.healthy_threshold"),
                HealthCheckConfig::DEFAULT_HEALTHY_THRESHOLD,
            ),
            unhealthy_threshold: self.threshold(
                &file.unhealthy_threshold,
                &format!("{field}.unhealthy_threshold"),
                HealthCheckConfig::DEFAULT_UNHEALTHY_THRESHOLD,
            ),
            initial_state: match file.initial_state.as_ref().map(|s| *s.get_ref()) {
                None | Some(InitialStateFile::Healthy) => InitialState::Healthy,
                Some(InitialStateFile::Unhealthy) => InitialState::Unhealthy,
            },
        })
    }

    pub(super) fn method(&mut self, value: &Option<Spanned<String>>, field: &str) -> http::Method {
        let Some(value) = value else {
            return http::Method::GET;
        };
        match value.get_ref().parse::<http::Method>() {
            Ok(m) if matches!(m.as_str(), "GET" | "HEAD" | "OPTIONS" | "POST" | "PUT") => m,
            _ => {
                self.report(
                    value.span(),
                    format!(
                        "{field}: {:?} is not one of GET, HEAD, OPTIONS, POST, PUT",
                        value.get_ref()
                    ),
                );
                http::Method::GET
            }
        }
    }

    pub(super) fn probe_path(&mut self, value: &Option<Spanned<String>>, field: &str) -> String {
        let Some(value) = value else {
            return "/".to_owned();
        };
        let path = value.get_ref();
        if path.starts_with('/') && path.parse::<http::uri::PathAndQuery>().is_ok() {
            path.clone()
        } else {
            self.report(
                value.span(),
                format!("{field}: {path:?} must be a path starting with '/'"),
            );
            "/".to_owned()
        }
    }

    /// `"200-399"`, `"200,204"` or `"200-299,301"`.
    pub(super) fn status_ranges(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
    ) -> Vec<(u16, u16)> {
        let default = vec![(200, 399)];
        let Some(value) = value else { return default };
        let parsed: Option<Vec<(u16, u16)>> = value
            .get_ref()
            .split(',')
            .map(|part| {
                let part = part.trim();
                let (lo, hi) = part.split_once('-').unwrap_or((part, part));
                let (lo, hi) = (
                    lo.trim().parse::<u16>().ok()?,
                    hi.trim().parse::<u16>().ok()?,
                );
                ((100..=599).contains(&lo) && (lo..=599).contains(&hi)).then_some((lo, hi))
            })
            .collect();
        match parsed {
            Some(ranges) if !ranges.is_empty() => ranges,
            _ => {
                self.report(
                    value.span(),
                    format!(
                        "{field}: {:?} is not a status list like \"200-399\" or \"200,204\"",
                        value.get_ref()
                    ),
                );
                default
            }
        }
    }

    pub(super) fn threshold(
        &mut self,
        value: &Option<Spanned<i64>>,
        field: &str,
        default: u32,
    ) -> NonZeroU32 {
        let n: u32 = self.int(value, field, 1..=100, default);
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }
}
