//! Who may use a route and how often, compiled when the config is applied: basic auth, JWT,
//! forward auth and rate limits. The decisions are pure or read local state (a key set, a
//! limiter table); what they need from outside is fetched in the background. A route without
//! any holds no `Gate`, so it pays nothing.
//!
//! State that must outlive one config (limiter tables, fetched key sets) is kept on the
//! `Shelf`, which the control plane owns and each new router takes it from.

pub mod basic;
pub mod fleet;
pub mod jwt;
pub mod limit;
mod shelf;

pub use shelf::{Chores, Fetched, Shelf};

use crate::config::{ForwardAuthConfig, JwtKeys, LimitScope, RateLimitConfig, RouteConfig};
use crate::metrics::{self, Metrics};
use ::metrics::Counter;
use http::{HeaderName, HeaderValue};

use std::sync::Arc;

/// A route's access policies, in the order they run.
#[derive(Debug)]
pub struct Gate {
    /// Basic auth.
    pub basic: Option<basic::BasicGate>,
    /// JWT validation.
    pub jwt: Option<jwt::JwtGate>,
    /// Forward auth.
    pub forward: Option<ForwardGate>,
    /// Rate limits, every one of which must admit.
    pub limits: Box<[LimitRule]>,
    /// `switchyard_auth_failures_total` of the route, by `Failure`.
    failures: [Counter; Failure::ALL.len()],
}

/// Why an auth policy refused a request (the metric's `kind` and `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Basic auth without credentials.
    BasicMissing,
    /// Basic auth with wrong ones.
    BasicInvalid,
    /// No bearer token.
    JwtMissing,
    /// A token refused.
    JwtInvalid,
    /// The auth service said no.
    ForwardDenied,
    /// The auth service did not answer.
    ForwardError,
}

impl Failure {
    const ALL: [Self; 6] = [
        Self::BasicMissing,
        Self::BasicInvalid,
        Self::JwtMissing,
        Self::JwtInvalid,
        Self::ForwardDenied,
        Self::ForwardError,
    ];

    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Self::BasicMissing => ("basic", "missing"),
            Self::BasicInvalid => ("basic", "invalid"),
            Self::JwtMissing => ("jwt", "missing"),
            Self::JwtInvalid => ("jwt", "invalid"),
            Self::ForwardDenied => ("forward", "denied"),
            Self::ForwardError => ("forward", "error"),
        }
    }
}

impl Gate {
    /// Whether a request may have to wait here (a password hash, the auth service).
    pub fn waits(&self) -> bool {
        self.basic.is_some() || self.forward.is_some()
    }

    /// Counts a refusal.
    pub fn failed(&self, failure: Failure) {
        self.failures[failure as usize].increment(1);
    }
}

/// A route's forward auth: its settings, the auth pool, and answers remembered.
#[derive(Debug)]
pub struct ForwardGate {
    /// As configured.
    pub config: ForwardAuthConfig,
    /// Index of the auth service's pool in the snapshot.
    pub pool: usize,
    /// 2xx answers by credentials digest: when each expires (limiter clock) and the headers
    /// it copies. Bounded; emptied whole when full.
    pub remembered: papaya::HashMap<[u8; 32], Remembered>,
    /// `switchyard_forward_auth_requests_total` by result: allowed, remembered, denied, error.
    pub results: [Counter; 4],
}

/// A remembered answer: when it expires (limiter clock) and the headers it copies.
pub type Remembered = (u64, Arc<[(HeaderName, HeaderValue)]>);

/// Answers a forward-auth gate remembers at most.
pub const REMEMBERED_ANSWERS: usize = 10_000;

/// One rate-limit rule, compiled, with its table and counters.
#[derive(Debug)]
pub struct LimitRule {
    /// As configured.
    pub config: RateLimitConfig,
    /// Its arithmetic.
    pub gcra: limit::Gcra,
    /// Its cells (this replica's share of a fleet limit while the store is away).
    pub table: Arc<limit::Table>,
    /// `RateLimit-Policy`, ready to send.
    pub policy: HeaderValue,
    /// Its name in `RateLimit` fields: `"<route>.<n>"`.
    pub name: Box<str>,
    /// `switchyard_rate_limit_requests_total`: allowed, limited, dry-run refusals.
    pub allowed: Counter,
    /// Refused.
    pub limited: Counter,
    /// Would have been refused, under `dry_run`.
    pub dry_run: Counter,
    /// The fleet's state on this replica, for `scope = "fleet"`.
    pub fleet: Option<Arc<fleet::FleetShare>>,
    /// How its text keys are hashed (the shelf's random key for a local rule, so keys survive
    /// reloads; a fixed one for a fleet rule).
    pub text_keys: limit::TextKeys,
}

impl Gate {
    /// The gate of `route`, or `None` when it has no access policy. `pool_index` finds the
    /// forward-auth pool.
    pub fn of(
        route: &RouteConfig,
        pool_index: impl Fn(&str) -> Option<usize>,
        metrics: &Metrics,
        shelf: &Shelf,
    ) -> Option<Self> {
        let access = &route.access;
        if access.is_empty() {
            return None;
        }
        let jwt = access.jwt.as_ref().map(|config| {
            let keys = match &config.keys {
                JwtKeys::Url(url) => shelf.key_set(url, config.refresh),
                JwtKeys::File { text, .. } => Arc::new(jwt::KeySet::new(
                    crate::config::jwt_keys::parse(text).unwrap_or_default(),
                )),
            };
            jwt::JwtGate::new(config, keys)
        });
        let limits = access
            .rate_limits
            .iter()
            .enumerate()
            .map(|(n, config)| LimitRule::new(&route.name, n, config, metrics, shelf))
            .collect();
        Some(Self {
            basic: access.basic_auth.as_ref().map(basic::BasicGate::new),
            jwt,
            forward: access.forward_auth.as_ref().and_then(|config| {
                Some(ForwardGate {
                    pool: pool_index(&config.pool)?,
                    config: config.clone(),
                    remembered: papaya::HashMap::new(),
                    results: ["allowed", "remembered", "denied", "error"].map(|result| {
                        metrics.counter(
                            metrics::FORWARD_AUTH,
                            &[("route", &route.name), ("result", result)],
                        )
                    }),
                })
            }),
            limits,
            failures: Failure::ALL.map(|f| {
                let (kind, reason) = f.labels();
                metrics.counter(
                    metrics::AUTH_FAILURES,
                    &[("route", &route.name), ("kind", kind), ("reason", reason)],
                )
            }),
        })
    }
}

impl LimitRule {
    fn new(
        route: &str,
        n: usize,
        config: &RateLimitConfig,
        metrics: &Metrics,
        shelf: &Shelf,
    ) -> Self {
        let rule = n.to_string();
        let counter = |result| {
            metrics.counter(
                metrics::RATE_LIMIT_REQUESTS,
                &[("route", route), ("rule", &rule), ("result", result)],
            )
        };
        let name = format!("{route}.{n}");
        let scope = match config.scope {
            LimitScope::Local => "local",
            LimitScope::Fleet => "fleet",
        };
        // Kept across reloads while the rule counts the same way.
        let id = format!(
            "{route}#{n}#{:?}#{}/{:?}#{}#{scope}",
            config.key, config.count, config.period, config.burst
        );
        let gcra = limit::Gcra::of(config);
        let fleet = (config.scope == LimitScope::Fleet).then(|| {
            // About a tenth of a second's worth at a time, and never more than a burst.
            let per_second = f64::from(config.count) / config.period.as_secs_f64();
            let batch =
                ((per_second / 10.0).ceil() as u32).clamp(1, config.burst.saturating_add(1));
            let store_errors = metrics.counter(
                metrics::RATE_LIMIT_STORE_ERRORS,
                &[("route", route), ("rule", &rule)],
            );
            shelf.share(format!("{id}#fleet"), |wants| {
                fleet::FleetShare::new(
                    format!("switchyard:ratelimit:{route}.{n}:"),
                    gcra,
                    batch,
                    wants,
                    store_errors,
                )
            })
        });
        let policy = format!(
            "\"{}\";q={};w={}",
            name.replace(['"', '\\'], "_"),
            config.count,
            config.period.as_secs().max(1)
        );
        Self {
            gcra,
            table: shelf.table(id),
            text_keys: match fleet {
                None => limit::TextKeys::Local(shelf.hasher.clone()),
                Some(_) => limit::TextKeys::Fleet,
            },
            fleet,
            policy: HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
            name: name.into(),
            allowed: counter("allowed"),
            limited: counter("limited"),
            dry_run: counter("dry_run"),
            config: config.clone(),
        }
    }
}

/// Nanoseconds on the limiter clock (monotonic, from the first call). The system's clock, not
/// tokio's: reading tokio's looks up the runtime first, and the decisions that depend on time
/// are pure functions of `now`, tested with the time they are given.
pub fn clock() -> u64 {
    clock_at(std::time::Instant::now())
}

/// `at` on the limiter clock: a request's rate limits use the instant it began, read once.
pub fn clock_at(at: std::time::Instant) -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| at);
    // One second in: a TAT of zero always lies in the past.
    u64::try_from(at.saturating_duration_since(base).as_nanos())
        .unwrap_or(u64::MAX)
        .saturating_add(1_000_000_000)
}
