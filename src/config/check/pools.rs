//! Pools and their backends: balancing, retries and their budget, passive ejection, the
//! upstream protocol.

use super::Checker;
use super::values::parse_address;
use crate::config::file::{AlgorithmFile, BackendFile, OutlierFile, PoolFile, ProtocolFile};
use crate::config::model::{
    Algorithm, BackendConfig, OutlierConfig, PoolConfig, Protocol, ProxyVersion, RetryBudgetConfig,
    UpstreamConfig,
};
use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

impl Checker {
    pub(super) fn pool(&mut self, i: usize, pool: &Spanned<PoolFile>) -> Option<PoolConfig> {
        let span = pool.span();
        let pool = pool.get_ref();
        self.name(&pool.name, &format!("pools[{i}].name"));
        if pool.backends.is_empty() && pool.discovery.is_none() {
            self.report(
                span,
                format!(
                    "pools[{i}].backends: pool {:?} has no backends; add a [[pools.backends]] table or discovery",
                    pool.name.get_ref()
                ),
            );
        }
        self.unique_names(
            pool.backends.iter().map(|b| &b.get_ref().name),
            &format!("pools[{i}].backends"),
            "backend",
        );
        let mut addresses = HashSet::new();
        let mut backends = Vec::new();
        for (j, backend) in pool.backends.iter().enumerate() {
            let backend = backend.get_ref();
            if let Some(b) = self.backend(i, j, backend) {
                if !addresses.insert(b.address.clone()) {
                    self.report(
                        backend.address.span(),
                        format!(
                            "pools[{i}].backends[{j}].address: {} is already a backend of this pool; raise its weight instead",
                            b.address
                        ),
                    );
                }
                backends.push(b);
            }
        }
        let algorithm = match pool.algorithm.as_ref().map(|a| *a.get_ref()) {
            None | Some(AlgorithmFile::WeightedRoundRobin) => Algorithm::WeightedRoundRobin,
            Some(AlgorithmFile::LeastConnections) => Algorithm::LeastConnections,
            Some(AlgorithmFile::Hash) => Algorithm::Hash,
            Some(AlgorithmFile::LeastLatency) => Algorithm::LeastLatency,
        };
        let field = format!("pools[{i}]");
        Some(PoolConfig {
            name: pool.name.get_ref().clone(),
            hash: self.hash(pool, algorithm, &field),
            latency_decay: self.latency_decay(pool, algorithm, &field),
            sticky: self.sticky(pool, &field),
            admission: self.admission(pool, &mut backends, &field),
            algorithm,
            backends,
            request_headers: self
                .header_rules(&pool.request_headers, &format!("{field}.request_headers")),
            response_headers: self
                .header_rules(&pool.response_headers, &format!("{field}.response_headers")),
            retries: self.int(
                &pool.retries,
                &format!("{field}.retries"),
                0..=10,
                PoolConfig::DEFAULT_RETRIES,
            ),
            retry_on: self.retry_on(pool, &field),
            retry_budget: self.retry_budget(pool, &field),
            panic_threshold: self.int(
                &pool.panic_threshold,
                &format!("{field}.panic_threshold"),
                0..=100,
                PoolConfig::DEFAULT_PANIC_THRESHOLD,
            ),
            slow_start: Some(self.duration(
                &pool.slow_start,
                &format!("{field}.slow_start"),
                Duration::ZERO,
            ))
            .filter(|d| !d.is_zero()),
            health_check: pool
                .health_check
                .as_ref()
                .and_then(|h| self.health_check(h.get_ref(), &format!("{field}.health_check"))),
            outlier: self.outlier(
                &pool.outlier_detection,
                &format!("{field}.outlier_detection"),
            ),
            upstream: {
                let upstream = self.upstream(pool, &field)?;
                self.grpc_probe_needs_h2(pool, &upstream, &field);
                upstream
            },
            discovery: pool
                .discovery
                .as_ref()
                .and_then(|d| self.discovery(d.get_ref(), &format!("{field}.discovery"))),
        })
    }

    pub(super) fn backend(
        &mut self,
        i: usize,
        j: usize,
        backend: &BackendFile,
    ) -> Option<BackendConfig> {
        let field = format!("pools[{i}].backends[{j}]");
        self.name(&backend.name, &format!("{field}.name"));
        let weight = match &backend.weight {
            None => NonZeroU32::MIN,
            Some(w) => match u32::try_from(*w.get_ref()).ok().and_then(NonZeroU32::new) {
                Some(weight) if weight.get() <= BackendConfig::MAX_WEIGHT => weight,
                _ => {
                    self.report(
                        w.span(),
                        format!(
                            "{field}.weight: must be between 1 and {}, got {}",
                            BackendConfig::MAX_WEIGHT,
                            w.get_ref()
                        ),
                    );
                    NonZeroU32::MIN
                }
            },
        };
        let max_in_flight =
            self.at_least_one(&backend.max_in_flight, &format!("{field}.max_in_flight"));
        let max_connections = self.at_least_one(
            &backend.max_connections,
            &format!("{field}.max_connections"),
        );
        let address = match parse_address(backend.address.get_ref()) {
            Some(address) => address,
            None => {
                self.report(
                    backend.address.span(),
                    format!(
                        "{field}.address: {:?} is not host:port (e.g. \"10.0.0.7:8080\" or \"api.internal:80\")",
                        backend.address.get_ref()
                    ),
                );
                return None;
            }
        };
        Some(BackendConfig {
            name: backend.name.get_ref().clone(),
            address,
            weight,
            max_in_flight,
            max_connections,
        })
    }

    /// A gRPC probe speaks HTTP/2: its pool must too.
    pub(super) fn grpc_probe_needs_h2(
        &mut self,
        pool: &PoolFile,
        upstream: &crate::config::model::UpstreamConfig,
        field: &str,
    ) {
        let Some(check) = &pool.health_check else {
            return;
        };
        if let Some(kind) = &check.get_ref().kind {
            if matches!(kind.get_ref(), crate::config::file::ProbeKindFile::Grpc)
                && !upstream.protocol.is_h2()
            {
                self.report(
                    kind.span(),
                    format!(
                        "{field}.health_check.type: \"grpc\" probes need protocol = \"h2\" or \"h2c\""
                    ),
                );
            }
        }
    }

    pub(super) fn retry_on(
        &mut self,
        pool: &PoolFile,
        field: &str,
    ) -> crate::config::model::RetryOn {
        let Some(list) = &pool.retry_on else {
            return crate::config::model::RetryOn::default();
        };
        let mut on = crate::config::model::RetryOn {
            reset: false,
            timeout: false,
            server_error: false,
        };
        for item in list {
            match item.get_ref().as_str() {
                "connect-failure" => {} // always on
                "reset" => on.reset = true,
                "timeout" => on.timeout = true,
                "5xx" => on.server_error = true,
                other => self.report(
                    item.span(),
                    format!(
                        "{field}.retry_on: {other:?} is not one of \"connect-failure\", \"reset\", \"timeout\", \"5xx\""
                    ),
                ),
            }
        }
        on
    }

    pub(super) fn retry_budget(&mut self, pool: &PoolFile, field: &str) -> RetryBudgetConfig {
        let defaults = RetryBudgetConfig::default();
        RetryBudgetConfig {
            percent: self.int(
                &pool.retry_budget_percent,
                &format!("{field}.retry_budget_percent"),
                0..=100,
                defaults.percent,
            ),
            min_per_second: self.int(
                &pool.retry_budget_min_per_second,
                &format!("{field}.retry_budget_min_per_second"),
                0..=1_000_000,
                defaults.min_per_second,
            ),
        }
    }

    pub(super) fn outlier(&mut self, file: &OutlierFile, field: &str) -> OutlierConfig {
        let d = OutlierConfig::default();
        let base = self.duration(
            &file.base_ejection_time,
            &format!("{field}.base_ejection_time"),
            d.base_ejection_time,
        );
        let max = self.duration(
            &file.max_ejection_time,
            &format!("{field}.max_ejection_time"),
            d.max_ejection_time.max(base),
        );
        if let Some(m) = &file.max_ejection_time {
            if max < base {
                self.report(
                    m.span(),
                    format!(
                        "{field}.max_ejection_time: must be at least base_ejection_time ({base:?})"
                    ),
                );
            }
        }
        OutlierConfig {
            consecutive_failures: self.int(
                &file.consecutive_failures,
                &format!("{field}.consecutive_failures"),
                0..=1000,
                d.consecutive_failures,
            ),
            consecutive_5xx: self.int(
                &file.consecutive_5xx,
                &format!("{field}.consecutive_5xx"),
                0..=1000,
                d.consecutive_5xx,
            ),
            base_ejection_time: base,
            max_ejection_time: max,
            max_ejection_percent: self.int(
                &file.max_ejection_percent,
                &format!("{field}.max_ejection_percent"),
                0..=100,
                d.max_ejection_percent,
            ),
            uneject_on_probe: file.uneject_on_probe.unwrap_or(d.uneject_on_probe),
        }
    }

    /// Validates a pool's `protocol`, `[pools.tls]` and `max_idle_per_backend`.
    pub(super) fn upstream(&mut self, pool: &PoolFile, field: &str) -> Option<UpstreamConfig> {
        let protocol = match pool.protocol.as_ref().map(|p| *p.get_ref()) {
            None | Some(ProtocolFile::Http1) => Protocol::Http1,
            Some(ProtocolFile::H2) => Protocol::H2,
            Some(ProtocolFile::H2c) => Protocol::H2c,
        };
        match (&pool.protocol, protocol, &pool.tls) {
            (Some(p), Protocol::H2, None) => self.report(
                p.span(),
                format!(
                    "{field}.protocol: \"h2\" is HTTP/2 over TLS and needs a [{field}.tls] table; use \"h2c\" for HTTP/2 without TLS"
                ),
            ),
            (Some(p), Protocol::H2c, Some(_)) => self.report(
                p.span(),
                format!(
                    "{field}.protocol: \"h2c\" is HTTP/2 without TLS; use \"h2\" with a [{field}.tls] table"
                ),
            ),
            _ => {}
        }
        let max_idle_per_backend = self.int(
            &pool.max_idle_per_backend,
            &format!("{field}.max_idle_per_backend"),
            0..=UpstreamConfig::MAX_IDLE_LIMIT as i64,
            UpstreamConfig::DEFAULT_MAX_IDLE,
        );
        let tls = match &pool.tls {
            None => None,
            Some(tls) => Some(Arc::new(self.upstream_tls(
                tls,
                protocol,
                &format!("{field}.tls"),
            )?)),
        };
        let send_proxy_protocol = match &pool.send_proxy_protocol {
            None => None,
            Some(version) => {
                let parsed = self.word(
                    version,
                    &format!("{field}.send_proxy_protocol"),
                    &[("v1", ProxyVersion::V1), ("v2", ProxyVersion::V2)],
                );
                if protocol.is_h2() {
                    // One HTTP/2 connection carries many clients' requests; a header names one.
                    self.report(version.span(), format!("{field}.send_proxy_protocol: a PROXY header names one client, and an HTTP/2 connection carries many: use protocol = \"http1\""));
                }
                parsed
            }
        };
        Some(UpstreamConfig {
            protocol,
            tls,
            max_idle_per_backend,
            send_proxy_protocol,
        })
    }
}
