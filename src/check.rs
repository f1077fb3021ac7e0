//! `switchyard check`: a config checked as `run` would check it and summarised, or with `--diff`
//! what a reload from one config to another changes.

use std::path::Path;
use std::process::ExitCode;
use switchyard::config::{self, Config};

/// `check FILE`: the config checked as `run` would check it, then summarised, with its warnings.
pub fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(config) => {
            // What `run` would refuse for the config's sake, refused here the same way.
            if let Err(err) = switchyard::gateway::admin_tokens(&config) {
                eprintln!("{err}");
                return ExitCode::from(super::EXIT_INVALID_CONFIG);
            }
            print!("{}", summary(path, &config));
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            for warning in expiry_warnings(&config, std::time::SystemTime::now()) {
                eprintln!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => super::invalid(&err),
    }
}

/// How soon a certificate's expiry is worth a warning (the shipped alert's threshold too).
const EXPIRY_WARNING: std::time::Duration = std::time::Duration::from_secs(14 * 86_400);

/// A line for each served certificate that expires within `EXPIRY_WARNING` of `now`.
fn expiry_warnings(config: &Config, now: std::time::SystemTime) -> Vec<String> {
    let unix = |time: std::time::SystemTime| {
        time.duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let (now, soon) = (unix(now), unix(now + EXPIRY_WARNING));
    switchyard::snapshot::CertificateExpiry::of(config)
        .iter()
        .filter(|c| c.expires < soon)
        .map(|c| {
            let when = switchyard::upstream::timestamp(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(c.expires.max(0.0)),
            );
            let (listener, name) = (&c.listener, &c.name);
            if c.expires <= now {
                format!("listener {listener}: certificate {name} expired at {when}")
            } else {
                format!("listener {listener}: certificate {name} expires within 14 days, at {when}")
            }
        })
        .collect()
}

/// `check --diff OLD NEW`: both checked, then what a reload from one to the other changes.
pub fn diff(old: &Path, new: &Path) -> ExitCode {
    let (old, new) = match (config::load(old), config::load(new)) {
        (Ok(old), Ok(new)) => (old, new),
        (Err(err), _) | (_, Err(err)) => return super::invalid(&err),
    };
    let changes = switchyard::control::diff(&old, &new);
    match serde_json::to_string_pretty(&changes) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("cannot print the changes: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What `check` prints for a valid config: listeners, certificates, routes and pools.
fn summary(path: &Path, config: &Config) -> String {
    let mut out = String::new();
    out += &format!("{}: ok\n", path.display());
    out += "listeners:\n";
    for l in &config.listeners {
        out += &format!("  {:<16} {}", l.name, l.bind);
        if let Some(port) = l.redirect_to_https {
            out += &format!(" redirects to https port {port}");
        }
        out += "\n";
        for c in l.tls.iter().flat_map(|tls| &tls.certificates) {
            out += &format!(
                "    tls {:<12} expires {}\n",
                c.label(),
                humantime::format_rfc3339_seconds(c.not_after)
            );
        }
        for c in l.tls.iter().flat_map(|tls| &tls.acme) {
            let challenge = match c.challenge {
                switchyard::config::Challenge::Http01 => "http-01",
                switchyard::config::Challenge::TlsAlpn01 => "tls-alpn-01",
            };
            out += &format!("    acme {} by {challenge}\n", c.names.join(", "));
        }
    }
    if let Some(acme) = &config.acme {
        out += &format!("acme: {}\n", acme.directory);
    }
    out += "routes:\n";
    for r in &config.routes {
        out += &format!("  {:<16} {r}\n", r.name);
    }
    out += "pools:\n";
    for p in &config.pools {
        let algorithm = describe_algorithm(p);
        let protocol = match (p.upstream.protocol, p.upstream.tls.is_some()) {
            (switchyard::config::Protocol::Http1, false) => "HTTP/1.1",
            (switchyard::config::Protocol::Http1, true) => "HTTP/1.1 over TLS",
            (switchyard::config::Protocol::H2, _) => "HTTP/2 over TLS",
            (switchyard::config::Protocol::H2c, _) => "HTTP/2 (h2c)",
        };
        use switchyard::config::DiscoverySource;
        let discovery = match p.discovery.as_ref().map(|d| &d.source) {
            None => String::new(),
            Some(DiscoverySource::Dns { name, port, .. }) => format!(" + DNS {name}:{port}"),
            Some(DiscoverySource::DnsSrv { name, .. }) => format!(" + DNS SRV {name}"),
            Some(DiscoverySource::Redis { service, .. }) => format!(" + Redis service {service}"),
        };
        out += &format!(
            "  {:<16} {algorithm}, {protocol}, {} backends{discovery}\n",
            p.name,
            p.backends.len()
        );
        for b in &p.backends {
            out += &format!("    {:<14} {} weight {}\n", b.name, b.address, b.weight);
        }
    }
    out
}

/// A pool's algorithm with the settings that shape it, for `check`'s summary.
fn describe_algorithm(pool: &switchyard::config::PoolConfig) -> String {
    use switchyard::config::{Algorithm, HashKey, HashLayout};
    let name = pool.algorithm.as_str();
    match (&pool.algorithm, &pool.hash) {
        (Algorithm::Hash, Some(hash)) => {
            let key = match &hash.key {
                HashKey::ClientIp {
                    v4_prefix,
                    v6_prefix,
                } => format!("client_ip /{v4_prefix} /{v6_prefix}"),
                HashKey::Header(name) => format!("header:{name}"),
                HashKey::Cookie(name) => format!("cookie:{name}"),
                HashKey::Query(name) => format!("query:{name}"),
                HashKey::Path => "path".to_owned(),
                HashKey::PathRegex(pattern) => format!("path_regex:{}", pattern.0.as_str()),
            };
            let table = match hash.layout {
                HashLayout::Maglev => "maglev",
                HashLayout::Ring => "ring",
            };
            let bound = hash
                .balance_factor
                .map_or(String::new(), |f| format!(", bound {f} %"));
            format!("{name} by {key} ({table}{bound})")
        }
        (Algorithm::LeastLatency, _) => format!(
            "{name} (decay {})",
            humantime::format_duration(pool.latency_decay)
        ),
        _ => name.to_owned(),
    }
}
