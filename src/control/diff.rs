//! What a reload from one config to another changes, computed from the two configs alone: the
//! reload's summary, and `switchyard check --diff OLD NEW`. Pure; the backend part follows the
//! `reconcile` plan.

use super::reconcile::{self, Changed, Step};
use crate::config::{Config, ListenerConfig, PoolConfig};
use crate::events::{NotApplied, ReloadSummary};

/// The summary of reloading `new` over `old` (generation left at 0).
pub fn diff(old: &Config, new: &Config) -> ReloadSummary {
    let mut summary = ReloadSummary::default();
    for pool in &new.pools {
        let Some(before) = old.pools.iter().find(|p| p.name == pool.name) else {
            summary.pools_added.push(pool.name.clone());
            continue;
        };
        pool_changes(before, pool, &mut summary);
    }
    for pool in &old.pools {
        if !new.pools.iter().any(|p| p.name == pool.name) {
            summary.pools_removed.push(pool.name.clone());
        }
    }
    for listener in &new.listeners {
        match old.listeners.iter().find(|l| l.name == listener.name) {
            None => summary.listeners_added.push(listener.name.clone()),
            Some(before) if before.bind != listener.bind => {
                summary.listeners_removed.push(before.name.clone());
                summary.listeners_added.push(listener.name.clone());
            }
            Some(before) => {
                // Destructured without `..`, like the pools' settings below.
                let ListenerConfig {
                    name: _,
                    bind: _,
                    tls: _,
                    redirect_to_https,
                    backlog,
                    trusted_proxies,
                    proxy_protocol,
                    http3,
                } = before;
                let changed = *redirect_to_https != listener.redirect_to_https
                    || *http3 != listener.http3
                    || *trusted_proxies != listener.trusted_proxies
                    || *proxy_protocol != listener.proxy_protocol
                    || tls_settings(before) != tls_settings(listener);
                if changed {
                    summary
                        .settings_changed
                        .push(format!("listeners.{}", listener.name));
                }
                if *backlog != listener.backlog {
                    summary.not_applied.push(NotApplied {
                        setting: format!("listeners.{}.backlog", listener.name),
                        reason: "the bound socket is kept: takes effect when the proxy restarts"
                            .to_owned(),
                    });
                }
            }
        }
    }
    // The ACME task is given its certificates at start.
    let acme = |config: &'_ Config| {
        let listeners = config.listeners.iter();
        listeners
            .filter_map(|l| Some((l.name.clone(), l.tls.as_ref()?.acme.clone())))
            .filter(|(_, acme)| !acme.is_empty())
            .collect::<Vec<_>>()
    };
    if acme(old) != acme(new) {
        summary.not_applied.push(NotApplied {
            setting: "listeners.tls.acme".to_owned(),
            reason: "read at start: certificates are ordered for the names the proxy started with; takes effect when the proxy restarts".to_owned(),
        });
    }
    for listener in &old.listeners {
        if !new.listeners.iter().any(|l| l.name == listener.name) {
            summary.listeners_removed.push(listener.name.clone());
        }
    }
    // Destructured without `..`: a new top-level setting does not compile until it is placed
    // here, applied on reload or read at start.
    let Config {
        listeners: _,
        pools: _,
        timeouts,
        limits,
        routes,
        webhooks,
        admin,
        reload,
        access_log,
        fleet,
        acme,
        warnings: _,
    } = old;
    let mut changed = |name: &str, differs: bool| {
        if differs {
            summary.settings_changed.push(name.to_owned());
        }
    };
    changed("timeouts", *timeouts != new.timeouts);
    changed("limits", *limits != new.limits);
    changed("routes", *routes != new.routes);
    changed("notify.webhooks", *webhooks != new.webhooks);
    // Read once at start: a reload cannot change them.
    for (setting, differs) in [
        ("admin", *admin != new.admin),
        ("reload", *reload != new.reload),
        ("access_log", *access_log != new.access_log),
        ("fleet", *fleet != new.fleet),
        ("acme", *acme != new.acme),
    ] {
        if differs {
            summary.not_applied.push(NotApplied {
                setting: setting.to_owned(),
                reason: "read at start: takes effect when the proxy restarts".to_owned(),
            });
        }
    }
    summary
}

/// What identifies a listener's TLS settings: its certificates (files, names, expiry) and
/// options.
fn tls_settings(listener: &ListenerConfig) -> Option<impl PartialEq + use<'_>> {
    listener.tls.as_ref().map(|tls| {
        let certificates: Vec<_> = tls
            .certificates
            .iter()
            .map(|c| (&c.cert_path, &c.key_path, c.label(), c.not_after))
            .collect();
        (
            certificates,
            tls.strict_sni,
            tls.min_version,
            tls.alpn.clone(),
            tls.handshake_timeout,
            tls.acme.clone(),
        )
    })
}

/// A kept pool's backend changes and changed settings.
fn pool_changes(old: &PoolConfig, new: &PoolConfig, summary: &mut ReloadSummary) {
    let label = |name: &str| format!("{}/{name}", new.name);
    let plan = reconcile::plan(&old.backends.iter().collect::<Vec<_>>(), &new.backends);
    for (b, step) in plan.backends.iter().enumerate() {
        match step {
            Step::Add(_) => summary.backends_added.push(label(&new.backends[b].name)),
            Step::Keep(_, Changed::Weight) => {
                summary
                    .backends_reweighted
                    .push(label(&new.backends[b].name));
            }
            Step::Keep(_, Changed::Settings) => summary.settings_changed.push(format!(
                "pools.{}.backends.{}",
                new.name, new.backends[b].name
            )),
            Step::Keep(_, Changed::No) => {}
        }
    }
    for &i in &plan.removed {
        summary.backends_removed.push(label(&old.backends[i].name));
    }
    // Destructured without `..`: a new pool setting does not compile until it is named here,
    // so none drops out of reload summaries unnoticed.
    let PoolConfig {
        name: _,
        backends: _,
        algorithm,
        hash,
        latency_decay,
        sticky,
        admission,
        retries,
        retry_on,
        retry_budget,
        panic_threshold,
        slow_start,
        health_check,
        outlier,
        upstream,
        discovery,
        request_headers,
        response_headers,
    } = old;
    let settings = [
        ("algorithm", *algorithm != new.algorithm),
        ("hash", *hash != new.hash),
        ("latency_decay", *latency_decay != new.latency_decay),
        ("sticky", *sticky != new.sticky),
        ("admission", *admission != new.admission),
        ("retries", *retries != new.retries),
        ("retry_on", *retry_on != new.retry_on),
        ("retry_budget", *retry_budget != new.retry_budget),
        ("panic_threshold", *panic_threshold != new.panic_threshold),
        ("slow_start", *slow_start != new.slow_start),
        ("health_check", *health_check != new.health_check),
        ("outlier_detection", *outlier != new.outlier),
        ("upstream", *upstream != new.upstream),
        ("discovery", *discovery != new.discovery),
        ("request_headers", *request_headers != new.request_headers),
        (
            "response_headers",
            *response_headers != new.response_headers,
        ),
    ];
    for (setting, differs) in settings {
        if differs {
            summary
                .settings_changed
                .push(format!("pools.{}.{setting}", new.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let base = "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:8080\"\n\
                    [[routes]]\nname = \"r\"\npool = \"web\"\n";
        crate::config::parse(&format!("{base}{text}"), "test.toml").unwrap()
    }

    #[test]
    fn names_backends_pool_settings_and_what_needs_a_restart() {
        let old = config(
            "[[pools]]\nname = \"web\"\nretries = 2\n\
             [[pools.backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n\
             [[pools.backends]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\n",
        );
        let new = config(
            "[timeouts]\nconnect = \"2s\"\n[access_log]\nformat = \"combined\"\n\
             [[pools]]\nname = \"web\"\nretries = 1\n\
             [pools.health_check]\ntype = \"tcp\"\n\
             [[pools.backends]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nweight = 2\n\
             [[pools.backends]]\nname = \"c\"\naddress = \"127.0.0.1:3\"\n",
        );
        let summary = diff(&old, &new);
        assert_eq!(summary.backends_added, ["web/c"]);
        assert_eq!(summary.backends_removed, ["web/b"]);
        assert_eq!(summary.backends_reweighted, ["web/a"]);
        assert_eq!(
            summary.settings_changed,
            ["pools.web.retries", "pools.web.health_check", "timeouts"]
        );
        assert_eq!(summary.not_applied.len(), 1);
        assert_eq!(summary.not_applied[0].setting, "access_log");
        assert_eq!(diff(&new, &new), ReloadSummary::default());
    }
}
