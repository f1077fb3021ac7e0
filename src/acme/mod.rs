//! Certificates by ACME: one task obtains each `[[listeners.tls.acme]]` certificate that has
//! none in storage, renews each when a third of its lifetime is left, and keeps serving the old
//! one until the new one is in hand. Failures are retried with exponential backoff and jitter
//! (an hour at least after the CA says `rateLimited`). Every change reaches the listeners
//! through `LiveCerts` (new handshakes get it, open connections keep theirs) and the event
//! stream.

mod account;
mod certificate;
mod client;
mod order;
mod outcome;
mod solver;
mod storage;
mod watch;

use crate::config::{AcmeCertificate, AcmeConfig, Challenge, FleetConfig};
use crate::events::{Event, EventLog, timestamp};
use crate::live_certs::{AcmeStatus, LiveCerts};
use account::{account, open_storage};
use certificate::{ARI_AGAIN, ari, parse};
use instant_acme::Account;
use outcome::{backoff, fail, serve};
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use storage::Storage;
use tokio_util::sync::CancellationToken;

/// The first retry after a failure; each next one waits twice as long, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// The longest wait between attempts (Caddy and certbot retry within a day too).
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// The least wait after the CA says we are rate limited.
const RATE_LIMITED: Duration = Duration::from_secs(3600);
/// How often certificates are looked at even when nothing is due: a certificate another
/// replica obtained is taken from storage within this time.
const LOOK_AGAIN: Duration = Duration::from_secs(60);

/// Orders this replica made, by result.
#[derive(Clone)]
pub struct OrderCounters {
    obtained: metrics::Counter,
    failed: metrics::Counter,
}

impl OrderCounters {
    /// Registers `switchyard_acme_orders_total`.
    pub fn new(metrics: &crate::metrics::Metrics) -> Self {
        let counter = |result| metrics.counter(crate::metrics::ACME_ORDERS, &[("result", result)]);
        Self {
            obtained: counter("obtained"),
            failed: counter("failed"),
        }
    }
}

/// Starts obtaining and renewing `certificates` (each with the listener serving it) with the
/// `[acme]` account, answering their challenges and serving them through `live`, until
/// `shutdown`.
pub fn start(
    config: AcmeConfig,
    fleet: Option<FleetConfig>,
    certificates: Vec<(String, AcmeCertificate)>,
    live: Arc<LiveCerts>,
    events: Arc<EventLog>,
    orders: OrderCounters,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let reporting = Reporting {
            events: &events,
            orders,
            retry_after: client::RetryAfter::default(),
        };
        tokio::select! {
            () = run(config, fleet, certificates, &live, &reporting) => {}
            () = shutdown.cancelled() => {}
        }
    })
}

/// Where the outcomes go (the event stream and the order counters), and what the CA said of
/// when to come back.
struct Reporting<'a> {
    events: &'a EventLog,
    orders: OrderCounters,
    retry_after: client::RetryAfter,
}

/// One managed certificate.
struct Managed {
    listener: String,
    wanted: AcmeCertificate,
    /// What is served now: its expiry and when to renew it.
    served: Option<(SystemTime, SystemTime)>,
    /// When to look at it next.
    due: SystemTime,
    failures: u32,
    /// The last failure and when the next attempt is, until a success.
    failed: Option<(String, SystemTime)>,
    /// An operator asked for a renewal now.
    forced: bool,
    /// The leaf served, for the CA's renewal information (ARI), and when to ask for it next.
    leaf: Option<CertificateDer<'static>>,
    ari_next: SystemTime,
}

impl Managed {
    fn status(&self) -> AcmeStatus {
        let unix = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        };
        AcmeStatus {
            listener: self.listener.clone(),
            names: self.wanted.names.clone(),
            challenge: match self.wanted.challenge {
                Challenge::Http01 => "http-01",
                Challenge::TlsAlpn01 => "tls-alpn-01",
            },
            not_after: self.served.map(|(not_after, _)| timestamp(not_after)),
            renew_at: self.served.map(|(_, renew_at)| timestamp(renew_at)),
            retry_at: self.failed.as_ref().map(|(_, at)| timestamp(*at)),
            last_error: self.failed.as_ref().map(|(err, _)| err.clone()),
            unix: self
                .served
                .map(|(not_after, renew_at)| (unix(not_after), unix(renew_at))),
        }
    }
}

async fn run(
    config: AcmeConfig,
    fleet: Option<FleetConfig>,
    certificates: Vec<(String, AcmeCertificate)>,
    live: &Arc<LiveCerts>,
    report: &Reporting<'_>,
) {
    let storage = open_storage(&config, fleet.as_ref()).await;
    // In fleet mode, other replicas' answers are served here, and their new certificates
    // taken at once.
    let stored = Arc::new(tokio::sync::Notify::new());
    let watching = storage.watch(Arc::clone(live), Arc::clone(&stored));
    tokio::pin!(watching);
    let account = {
        let mut failures = 0;
        loop {
            let attempt = tokio::select! {
                attempt = account(&config, &storage, &report.retry_after) => attempt,
                () = &mut watching => continue,
            };
            match attempt {
                Ok(account) => break account,
                Err(err) => {
                    failures += 1;
                    let wait = backoff(failures, false);
                    tracing::warn!(%err, retry_in = ?wait, "ACME account unavailable");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = &mut watching => {}
                    }
                }
            }
        }
    };
    let now = SystemTime::now();
    let mut managed: Vec<Managed> = certificates
        .into_iter()
        .map(|(listener, wanted)| Managed {
            listener,
            wanted,
            served: None,
            due: now,
            failures: 0,
            failed: None,
            forced: false,
            leaf: None,
            ari_next: now,
        })
        .collect();
    live.set_status(managed.iter().map(Managed::status).collect());
    loop {
        for i in 0..managed.len() {
            if managed[i].due <= SystemTime::now() {
                let mut news = Vec::new();
                let looked = look_at(&mut managed[i], &account, &storage, live, report, &mut news);
                tokio::select! {
                    () = looked => {}
                    () = &mut watching => {}
                }
                // The listing shows what an event announces by the time it is announced.
                live.set_status(managed.iter().map(Managed::status).collect());
                for event in news {
                    report.events.publish(event);
                }
            }
        }
        let next = managed
            .iter()
            .map(|c| c.due)
            .min()
            .unwrap_or(SystemTime::now() + LOOK_AGAIN);
        let wait = next
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(LOOK_AGAIN);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stored.notified() => {
                // Another replica stored one: look at every certificate now.
                let now = SystemTime::now();
                for cert in &mut managed {
                    cert.due = cert.due.min(now);
                }
            }
            () = live.renewal_asked() => {
                for name in live.take_renewals() {
                    if let Some(cert) = managed.iter_mut().find(|c| c.wanted.names[0] == name) {
                        tracing::info!(certificate = %name, "ACME renewal asked for");
                        cert.forced = true;
                        cert.due = SystemTime::now();
                    }
                }
            }
            () = &mut watching => {}
        }
    }
}

/// Takes `cert` from storage if it is there and newer, else orders it if it is due.
async fn look_at(
    cert: &mut Managed,
    account: &Account,
    storage: &Storage,
    live: &Arc<LiveCerts>,
    report: &Reporting<'_>,
    news: &mut Vec<Event>,
) {
    let name = cert.wanted.names[0].clone();
    let now = SystemTime::now();
    // Newer in storage (another replica's order, or the last run's): served at once.
    match storage.certificate(&name).await {
        Ok(Some(stored)) => match parse(&stored, &cert.wanted.names) {
            Ok(parsed)
                if parsed.not_after > now
                    && cert
                        .served
                        .is_none_or(|(not_after, _)| parsed.not_after > not_after) =>
            {
                serve(cert, &parsed, live, news, false);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(certificate = %name, %err, "stored ACME certificate unusable: ordering a new one")
            }
        },
        Ok(None) => {}
        Err(err) => tracing::warn!(certificate = %name, %err, "ACME storage unreadable"),
    }
    // Where the CA offers renewal information (RFC 9773), its window decides when to renew.
    if let (Some(leaf), Some((not_after, _))) = (&cert.leaf, cert.served) {
        if cert.ari_next <= now {
            match ari(account, leaf, now).await {
                Some((pick, again)) => {
                    cert.served = Some((not_after, pick.min(not_after)));
                    cert.ari_next = now + again;
                }
                None => cert.ari_next = now + ARI_AGAIN,
            }
        }
    }
    if let Some((_, renew_at)) = cert.served.filter(|_| !cert.forced) {
        if renew_at > now {
            cert.due = renew_at.min(now + LOOK_AGAIN);
            return;
        }
    }
    match storage.lock(&name).await {
        Ok(true) => {}
        Ok(false) => {
            // Another replica is ordering it: its certificate will be in storage.
            cert.due = now + FIRST_BACKOFF;
            return;
        }
        Err(err) => {
            fail(cert, &err, false, None, news);
            return;
        }
    }
    tracing::info!(certificate = %name, names = ?cert.wanted.names, "ordering an ACME certificate");
    let mut solver = solver::Solver::new(live, storage);
    let outcome = order::obtain(account, &cert.wanted, &mut solver).await;
    solver.finish().await;
    let result = match outcome {
        Ok(issued) => match parse(&issued, &cert.wanted.names) {
            Ok(parsed) => match storage.save_certificate(&name, &issued).await {
                Ok(()) => Ok(parsed),
                Err(err) => Err((format!("storing the certificate: {err}"), false)),
            },
            Err(err) => Err((format!("the CA's certificate is unusable: {err}"), false)),
        },
        Err(err) => Err((err.to_string(), err.rate_limited())),
    };
    storage.unlock(&name).await;
    match result {
        Ok(parsed) => {
            report.orders.obtained.increment(1);
            serve(cert, &parsed, live, news, true);
        }
        Err((err, rate_limited)) => {
            report.orders.failed.increment(1);
            let asked = report.retry_after.take(SystemTime::now());
            fail(cert, &err, rate_limited, asked, news);
        }
    }
    cert.forced = false;
}
