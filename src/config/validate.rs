//! Turns file text into a typed `Config`, collecting every problem with its `line:col` rather
//! than stopping at the first one.

use super::file::{
    AccessLogFile, AccessLogFormatFile, AdminFile, AlgorithmFile, BackendFile, FileConfig,
    PoolFile, RouteFile, TimeoutsFile,
};
use super::model::{
    AccessLogConfig, AccessLogFormat, AdminConfig, Algorithm, BackendConfig, Config, HostPattern,
    ListenerConfig, PoolConfig, ReloadConfig, RouteConfig, Timeouts, TokenSource,
};
use http::uri::Authority;
use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// The longest duration any setting accepts.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// One problem found in a config file, located by 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// What is wrong, naming the field.
    pub message: String,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{path}: cannot read config: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid config; every problem is listed.
    #[error("{}", DisplayProblems { origin, problems })]
    Invalid {
        /// The file (or other origin) the text came from.
        origin: String,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

struct DisplayProblems<'a> {
    origin: &'a str,
    problems: &'a [Problem],
}

impl fmt::Display for DisplayProblems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: {}", self.origin, p.line, p.col, p.message)?;
        }
        Ok(())
    }
}

/// Parses `text` and validates it; `origin` is used in error messages.
pub(super) fn parse_and_validate(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        origin: origin.to_owned(),
        problems,
    };
    let with_field = |at: usize, message: &str| match field_at(text, at) {
        Some(field) => format!("{field}: {message}"),
        None => message.to_owned(),
    };
    let (file, type_errors) = match super::sections::read(text) {
        Ok(read) => read,
        Err(err) => {
            let at = err.span().map_or(0, |span| span.start);
            let message = match err.message().trim_end() {
                "duplicate key" => super::sections::duplicate_key(text, at),
                message => with_field(at, message),
            };
            return Err(invalid(vec![locate(text, at, message)]));
        }
    };
    let mut checker = Checker {
        base: std::path::Path::new(origin)
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
        ..Checker::default()
    };
    let config = checker.config(file);
    // Every type error, and every other problem of what was read (the keys at fault left out,
    // as if unset), unless something could not be read at all: then what the checks say could
    // be caused by its absence.
    let checked = if type_errors.dropped {
        Vec::new()
    } else {
        checker.problems
    };
    let mut problems: Vec<Problem> = type_errors
        .errors
        .iter()
        .map(|(at, message)| locate(text, *at, with_field(*at, message)))
        .chain(
            checked
                .into_iter()
                .map(|(at, message)| locate(text, at, message)),
        )
        .collect();
    if problems.is_empty() {
        return Ok(config);
    }
    problems.sort_by_key(|p| (p.line, p.col));
    problems.dedup();
    Err(invalid(problems))
}

fn locate(text: &str, at: usize, message: String) -> Problem {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Problem {
        line: before.matches('\n').count() + 1,
        col: before[line_start..].chars().count() + 1,
        message,
    }
}

/// The dotted name of the value at `at` (`pools.backends.weight`), when `at` is inside a
/// `key = value` line: TOML's own type errors point at the value but do not name its key.
fn field_at(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at)?;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let (key, _) = before[line_start..].split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    let table = before[..line_start].lines().rev().find_map(|line| {
        let line = line.trim();
        let header = line
            .strip_prefix("[[")
            .and_then(|l| l.split_once("]]"))
            .or_else(|| line.strip_prefix('[').and_then(|l| l.split_once(']')))?;
        Some(header.0.trim())
    });
    Some(match table {
        Some(table) => format!("{table}.{key}"),
        None => key.to_owned(),
    })
}

/// Collects problems as (byte offset, message) while building the typed config.
#[derive(Default)]
pub(super) struct Checker {
    problems: Vec<(usize, String)>,
    /// The config file's directory: relative paths in the file are relative to it.
    pub(super) base: std::path::PathBuf,
}

impl Checker {
    pub(super) fn report(&mut self, span: Range<usize>, message: String) {
        self.problems.push((span.start, message));
    }

    fn config(&mut self, file: FileConfig) -> Config {
        let listeners = self.listeners(&file.listeners);
        let timeouts = self.timeouts(&file.timeouts);
        let limits = self.limits(&file.limits);
        let pools: Vec<PoolConfig> = file
            .pools
            .iter()
            .enumerate()
            .filter_map(|(i, pool)| self.pool(i, pool))
            .collect();
        self.unique_names(
            file.pools.iter().map(|p| &p.get_ref().name),
            "pools",
            "pool",
        );
        let pool_names: HashSet<&str> = file
            .pools
            .iter()
            .map(|p| p.get_ref().name.get_ref().as_str())
            .collect();
        let routes = self.routes(&file.routes, &pool_names);
        let admin_bind_span = file
            .admin
            .as_ref()
            .and_then(|admin| admin.bind.as_ref().map(Spanned::span));
        let admin = self.admin(file.admin.unwrap_or_default());
        if let (Some(admin), Some(span)) = (&admin, admin_bind_span) {
            if let Some(listener) = listeners.iter().find(|l| binds_overlap(l.bind, admin.bind)) {
                self.report(
                    span,
                    format!(
                        "admin.bind: {} overlaps listener {:?} on {}",
                        admin.bind, listener.name, listener.bind
                    ),
                );
            }
        }
        let reload = ReloadConfig {
            watch: file.reload.watch.unwrap_or(true),
            debounce: self.duration(
                &file.reload.debounce,
                "reload.debounce",
                ReloadConfig::default().debounce,
            ),
        };
        let access_log = self.access_log(&file.access_log);
        let webhooks = self.webhooks(&file.notify.webhooks);
        let fleet = file.fleet.as_ref().and_then(|fleet| self.fleet(fleet));
        Config {
            fleet,
            listeners,
            timeouts,
            limits,
            routes,
            pools,
            admin,
            webhooks,
            reload,
            access_log,
        }
    }

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

    fn name(&mut self, name: &Spanned<String>, field: &str) {
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

    fn listeners(
        &mut self,
        listeners: &[Spanned<super::file::ListenerFile>],
    ) -> Vec<ListenerConfig> {
        if listeners.is_empty() {
            self.report(
                0..0,
                "listeners: at least one [[listeners]] table is required".into(),
            );
        }
        self.unique_names(
            listeners.iter().map(|l| &l.get_ref().name),
            "listeners",
            "listener",
        );
        let mut binds: Vec<SocketAddr> = Vec::new();
        let mut out = Vec::new();
        for (i, listener) in listeners.iter().enumerate() {
            let listener = listener.get_ref();
            self.name(&listener.name, &format!("listeners[{i}].name"));
            match listener.bind.get_ref().parse::<SocketAddr>() {
                Ok(bind) => {
                    if let Some(other) = binds.iter().find(|other| binds_overlap(**other, bind)) {
                        self.report(
                            listener.bind.span(),
                            format!(
                                "listeners[{i}].bind: {bind} overlaps {other}, bound by another listener"
                            ),
                        );
                    }
                    binds.push(bind);
                    let field = format!("listeners[{i}]");
                    let tls = listener
                        .tls
                        .as_ref()
                        .and_then(|tls| self.listener_tls(tls, &format!("{field}.tls")))
                        .map(std::sync::Arc::new);
                    let redirect_to_https = self.redirect(listener, &field);
                    let backlog = listener.backlog.is_some().then(|| {
                        self.int(&listener.backlog, &format!("{field}.backlog"), 1..=65_535, 1024)
                    });
                    out.push(ListenerConfig {
                        name: listener.name.get_ref().clone(),
                        bind,
                        tls,
                        redirect_to_https,
                        backlog,
                    });
                }
                Err(_) => self.report(
                    listener.bind.span(),
                    format!(
                        "listeners[{i}].bind: {:?} is not an IP:port address (e.g. \"0.0.0.0:8080\" or \"[::]:8080\")",
                        listener.bind.get_ref()
                    ),
                ),
            }
        }
        out
    }

    /// The HTTPS port a plain listener redirects to, if it does.
    fn redirect(&mut self, listener: &super::file::ListenerFile, field: &str) -> Option<u16> {
        let https_port = listener.https_port.as_ref().map(|p| {
            u16::try_from(*p.get_ref())
                .ok()
                .filter(|&port| port != 0)
                .unwrap_or_else(|| {
                    self.report(
                        p.span(),
                        format!("{field}.https_port: must be a port from 1 to 65535"),
                    );
                    443
                })
        });
        match &listener.redirect_to_https {
            Some(on) if *on.get_ref() => {
                if listener.tls.is_some() {
                    self.report(
                        on.span(),
                        format!(
                            "{field}.redirect_to_https: a TLS listener cannot redirect to HTTPS"
                        ),
                    );
                }
                Some(https_port.unwrap_or(443))
            }
            _ => None,
        }
    }

    fn access_log(&mut self, file: &AccessLogFile) -> Option<AccessLogConfig> {
        if file.enabled == Some(false) {
            return None;
        }
        let format = match file.format.as_ref().map(|f| *f.get_ref()) {
            None | Some(AccessLogFormatFile::Json) => AccessLogFormat::Json,
            Some(AccessLogFormatFile::Combined) => AccessLogFormat::Combined,
            Some(AccessLogFormatFile::Extended) => AccessLogFormat::Extended,
        };
        let path = match &file.path {
            None => None,
            Some(p) if p.get_ref() == "stdout" => None,
            Some(p) if p.get_ref().is_empty() => {
                self.report(
                    p.span(),
                    "access_log.path: must be \"stdout\" or a file path".into(),
                );
                None
            }
            Some(p) => Some(p.get_ref().into()),
        };
        let buffer: usize = self.int(&file.buffer, "access_log.buffer", 1..=1_048_576, 8192);
        Some(AccessLogConfig {
            format,
            path,
            buffer,
        })
    }

    fn admin(&mut self, file: AdminFile) -> Option<AdminConfig> {
        if file.enabled == Some(false) {
            return None;
        }
        let bind = match &file.bind {
            None => AdminConfig::DEFAULT_BIND
                .parse()
                .expect("default admin address is valid"),
            Some(bind) => match bind.get_ref().parse::<SocketAddr>() {
                Ok(addr) => addr,
                Err(_) => {
                    self.report(
                        bind.span(),
                        format!("admin.bind: {:?} is not an IP:port address", bind.get_ref()),
                    );
                    return None;
                }
            },
        };
        let token = self
            .token_source(&file.token_env, &file.token_file, "admin.token")?
            .unwrap_or_else(|| TokenSource::Env(AdminConfig::DEFAULT_TOKEN_ENV.to_owned()));
        let read_token = self
            .token_source(
                &file.read_token_env,
                &file.read_token_file,
                "admin.read_token",
            )
            .flatten();
        Some(AdminConfig {
            bind,
            token,
            read_token,
        })
    }

    /// Where a secret comes from: `{field}_env` or `{field}_file` (not both), or neither
    /// (`Some(None)`); `None` after reporting both set.
    pub(super) fn token_source(
        &mut self,
        env: &Option<Spanned<String>>,
        file: &Option<Spanned<String>>,
        field: &str,
    ) -> Option<Option<TokenSource>> {
        match (env, file) {
            (Some(env), Some(_)) => {
                self.report(
                    env.span(),
                    format!("{field}_env: set {field}_env or {field}_file, not both"),
                );
                None
            }
            (Some(env), None) => Some(Some(TokenSource::Env(env.get_ref().clone()))),
            (None, Some(path)) => Some(Some(TokenSource::File(path.get_ref().into()))),
            (None, None) => Some(None),
        }
    }

    fn timeouts(&mut self, file: &TimeoutsFile) -> Timeouts {
        let defaults = Timeouts::default();
        Timeouts {
            connect: self.duration(&file.connect, "timeouts.connect", defaults.connect),
            response_header: self.duration(
                &file.response_header,
                "timeouts.response_header",
                defaults.response_header,
            ),
            request_header: self.duration(
                &file.request_header,
                "timeouts.request_header",
                defaults.request_header,
            ),
            request_body: self.duration(
                &file.request_body,
                "timeouts.request_body",
                defaults.request_body,
            ),
            http2_ping_interval: self.duration(
                &file.http2_ping_interval,
                "timeouts.http2_ping_interval",
                defaults.http2_ping_interval,
            ),
            http2_ping_timeout: self.duration(
                &file.http2_ping_timeout,
                "timeouts.http2_ping_timeout",
                defaults.http2_ping_timeout,
            ),
            idle: self.duration(&file.idle, "timeouts.idle", defaults.idle),
            upstream_idle: self.duration(
                &file.upstream_idle,
                "timeouts.upstream_idle",
                defaults.upstream_idle,
            ),
            shutdown: self.duration(&file.shutdown, "timeouts.shutdown", defaults.shutdown),
            request: file
                .request
                .as_ref()
                .map(|_| self.duration(&file.request, "timeouts.request", Duration::MAX)),
            tunnel_idle: self.duration(
                &file.tunnel_idle,
                "timeouts.tunnel_idle",
                defaults.tunnel_idle,
            ),
            shutdown_delay: self.duration_or_zero(
                &file.shutdown_delay,
                "timeouts.shutdown_delay",
                defaults.shutdown_delay,
            ),
        }
    }

    fn limits(&mut self, file: &super::file::LimitsFile) -> super::model::Limits {
        let defaults = super::model::Limits::default();
        super::model::Limits {
            max_header_bytes: self.int(
                &file.max_header_bytes,
                "limits.max_header_bytes",
                8192..=1024 * 1024,
                defaults.max_header_bytes,
            ),
            max_headers: self.int(
                &file.max_headers,
                "limits.max_headers",
                1..=1000,
                defaults.max_headers,
            ),
            max_uri_bytes: self.int(
                &file.max_uri_bytes,
                "limits.max_uri_bytes",
                64..=1024 * 1024,
                defaults.max_uri_bytes,
            ),
            underscore_headers: match file.underscore_headers.as_ref().map(|u| *u.get_ref()) {
                None | Some(super::file::UnderscoreHeadersFile::Drop) => {
                    super::model::UnderscoreHeaders::Drop
                }
                Some(super::file::UnderscoreHeadersFile::Reject) => {
                    super::model::UnderscoreHeaders::Reject
                }
            },
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

    fn duration_from(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
        zero_allowed: bool,
    ) -> Duration {
        let Some(value) = value else { return default };
        match super::duration::parse_duration(value.get_ref()) {
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

    fn routes(&mut self, routes: &[Spanned<RouteFile>], pools: &HashSet<&str>) -> Vec<RouteConfig> {
        self.unique_names(routes.iter().map(|r| &r.get_ref().name), "routes", "route");
        let mut matches = HashSet::new();
        let mut out = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let span = route.span();
            let route = route.get_ref();
            self.name(&route.name, &format!("routes[{i}].name"));
            let host = route.host.as_ref().and_then(|h| self.host(h, i));
            let path_prefix = match &route.path_prefix {
                None => "/".to_owned(),
                Some(p) if p.get_ref().starts_with('/') && !p.get_ref().contains(['?', '#']) => {
                    p.get_ref().clone()
                }
                Some(p) => {
                    self.report(
                        p.span(),
                        format!(
                            "routes[{i}].path_prefix: {:?} must start with '/' and hold no '?' or '#'",
                            p.get_ref()
                        ),
                    );
                    continue;
                }
            };
            if !pools.contains(route.pool.get_ref().as_str()) {
                self.report(
                    route.pool.span(),
                    format!("routes[{i}].pool: no pool named {:?}", route.pool.get_ref()),
                );
            }
            if !matches.insert((host.clone(), path_prefix.clone())) {
                self.report(
                    span.clone(),
                    format!(
                        "routes[{i}]: another route already matches the same host and path_prefix {path_prefix:?}"
                    ),
                );
            }
            let max_body_bytes = route.max_body_bytes.as_ref().map(|_| {
                self.int(
                    &route.max_body_bytes,
                    &format!("routes[{i}].max_body_bytes"),
                    0..=i64::MAX,
                    0,
                )
            });
            out.push(RouteConfig {
                name: route.name.get_ref().clone(),
                host,
                path_prefix,
                pool: route.pool.get_ref().clone(),
                max_body_bytes,
                websocket: route.websocket.unwrap_or(true),
            });
        }
        out
    }

    fn host(&mut self, host: &Spanned<String>, i: usize) -> Option<HostPattern> {
        let raw = host.get_ref().trim_end_matches('.').to_ascii_lowercase();
        let (pattern, name) = match raw.strip_prefix("*.") {
            Some(suffix) => (HostPattern::Suffix(format!(".{suffix}")), suffix),
            None => (HostPattern::Exact(raw.clone()), raw.as_str()),
        };
        if is_dns_name(name) {
            Some(pattern)
        } else {
            self.report(
                host.span(),
                format!(
                    "routes[{i}].host: {:?} is not a host name or a \"*.suffix\" wildcard",
                    host.get_ref()
                ),
            );
            None
        }
    }

    fn pool(&mut self, i: usize, pool: &Spanned<PoolFile>) -> Option<PoolConfig> {
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
        };
        let field = format!("pools[{i}]");
        Some(PoolConfig {
            name: pool.name.get_ref().clone(),
            algorithm,
            backends,
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
                0,
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

    fn backend(&mut self, i: usize, j: usize, backend: &BackendFile) -> Option<BackendConfig> {
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
        let max_requests =
            self.at_least_one(&backend.max_requests, &format!("{field}.max_requests"));
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
            max_requests,
            max_connections,
        })
    }

    /// A gRPC probe speaks HTTP/2: its pool must too.
    fn grpc_probe_needs_h2(
        &mut self,
        pool: &PoolFile,
        upstream: &super::model::UpstreamConfig,
        field: &str,
    ) {
        let Some(check) = &pool.health_check else {
            return;
        };
        if let Some(kind) = &check.get_ref().kind {
            if matches!(kind.get_ref(), super::file::ProbeKindFile::Grpc)
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

    /// An optional count that must be at least 1.
    fn at_least_one(&mut self, value: &Option<Spanned<i64>>, field: &str) -> Option<NonZeroU32> {
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
}

/// Accepts `ip:port`, `[ipv6]:port` and `dns-name:port` with a non-zero port.
fn parse_address(raw: &str) -> Option<Authority> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_offsets_as_one_based_line_and_column() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(locate(text, 0, String::new()).line, 1);
        let p = locate(text, text.find('=').unwrap(), String::new());
        assert_eq!((p.line, p.col), (1, 3));
        let p = locate(text, text.rfind('=').unwrap(), String::new());
        assert_eq!((p.line, p.col), (2, 4));
    }

    #[test]
    fn names_the_field_of_a_value_from_its_table_and_key() {
        let text = "[[pools]]\nname = \"p\"\n[[pools.backends]]\nweight = \"x\"\n";
        assert_eq!(
            field_at(text, text.find("\"x").unwrap()).as_deref(),
            Some("pools.backends.weight")
        );
        assert_eq!(field_at(text, 0), None);
        let top = "colour = 1\n";
        assert_eq!(field_at(top, 9).as_deref(), Some("colour"));
    }

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
