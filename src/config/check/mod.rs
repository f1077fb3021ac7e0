//! Turns file text into a typed `Config`, collecting every problem with its `line:col` rather
//! than stopping at the first one. One file per concept; `values` has the checks of single
//! values every section uses, `report` the problems and how they are shown.

use crate::config::file::FileConfig;
use crate::config::model::{Config, PoolConfig, ReloadConfig};
use report::{field_at, locate};
use std::collections::HashSet;
use std::ops::Range;
use toml::Spanned;
use values::binds_overlap;

mod access;
mod acme;
mod admission;
mod client;
mod compress;
mod cors;
mod discovery;
mod hash;
mod health;
mod hsts;
mod listeners;
mod notify;
mod operator;
mod pools;
mod rate_limit;
mod report;
mod route_parts;
mod route_policies;
mod routes;
mod tls;
mod values;

pub use report::{ConfigError, Problem};
pub use tls::certificate_names;
pub use values::is_name;

/// Parses `text` and validates it; `origin` is used in error messages.
pub(in crate::config) fn parse_and_validate(
    text: &str,
    origin: &str,
) -> Result<Config, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        origin: origin.to_owned(),
        problems,
    };
    let with_field = |at: usize, message: &str| match field_at(text, at) {
        Some(field) => format!("{field}: {message}"),
        None => message.to_owned(),
    };
    let (file, type_errors) = match crate::config::sections::read(text) {
        Ok(read) => read,
        Err(err) => {
            let at = err.span().map_or(0, |span| span.start);
            let message = match err.message().trim_end() {
                "duplicate key" => crate::config::sections::duplicate_key(text, at),
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
    let mut config = checker.config(file);
    config.warnings = checker
        .warnings
        .iter()
        .map(|(at, message)| {
            let warning = locate(text, *at, message.clone());
            format!(
                "{origin}:{}:{}: {}",
                warning.line, warning.col, warning.message
            )
        })
        .collect();
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

/// Collects problems as (byte offset, message) while building the typed config.
#[derive(Default)]
pub(super) struct Checker {
    problems: Vec<(usize, String)>,
    /// What is allowed but probably not meant.
    warnings: Vec<(usize, String)>,
    /// The config file's directory: relative paths in the file are relative to it.
    pub(super) base: std::path::PathBuf,
    /// What needs `[fleet]` (rate limits with `scope = "fleet"`, fleet sticky secrets), and
    /// the problem to report without it.
    pub(super) fleet_rules: Vec<(Range<usize>, String)>,
    /// What `[acme]` gives the ACME certificates that do not say.
    acme_defaults: acme::AcmeDefaults,
    /// The ACME certificates answered by http-01, which needs a plain listener.
    acme_http01: Vec<Range<usize>>,
    /// The names of ACME certificates so far: each may be ordered once.
    acme_seen: HashSet<String>,
    /// Whether a listener without TLS was seen.
    plain_listener: bool,
}

impl Checker {
    pub(super) fn report(&mut self, span: Range<usize>, message: String) {
        self.problems.push((span.start, message));
    }

    /// How many problems were found so far.
    pub(super) fn problem_count(&self) -> usize {
        self.problems.len()
    }

    pub(super) fn warn(&mut self, span: Range<usize>, message: String) {
        self.warnings.push((span.start, message));
    }

    pub(super) fn config(&mut self, file: FileConfig) -> Config {
        self.acme_defaults = self.acme_defaults(file.acme.as_ref());
        let listeners = self.listeners(&file.listeners);
        self.plain_listener = listeners.iter().any(|l| l.tls.is_none());
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
        if file.fleet.is_none() {
            for (span, message) in std::mem::take(&mut self.fleet_rules) {
                self.report(span, message);
            }
        }
        let acme = self.acme(file.acme.as_ref(), fleet.is_some());
        Config {
            acme,
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
            warnings: Vec::new(),
        }
    }
}
