//! Certificates by ACME: one task obtains each `[[listeners.tls.acme]]` certificate that has
//! none in storage, renews each when a third of its lifetime is left, and keeps serving the old
//! one until the new one is in hand. Failures are retried with exponential backoff and jitter
//! (an hour at least after the CA says `rateLimited`). Every change reaches the listeners
//! through `LiveCerts` (new handshakes get it, open connections keep theirs) and the event
//! stream.

mod client;
mod order;
mod solver;
mod storage;

use crate::config::{
    AcmeCertificate, AcmeConfig, AcmeStorage, Challenge, FleetConfig, crypto_provider,
};
use crate::events::{Event, EventLog, timestamp};
use crate::live_certs::{AcmeStatus, LiveCerts};
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};
use order::Issued;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
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
        };
        tokio::select! {
            () = run(config, fleet, certificates, &live, &reporting) => {}
            () = shutdown.cancelled() => {}
        }
    })
}

/// Where the outcomes go: the event stream and the order counters.
struct Reporting<'a> {
    events: &'a EventLog,
    orders: OrderCounters,
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
    events: &Reporting<'_>,
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
                attempt = account(&config, &storage) => attempt,
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
        })
        .collect();
    live.set_status(managed.iter().map(Managed::status).collect());
    loop {
        for i in 0..managed.len() {
            if managed[i].due <= SystemTime::now() {
                let looked = look_at(&mut managed[i], &account, &storage, live, events);
                tokio::select! {
                    () = looked => {}
                    () = &mut watching => {}
                }
                live.set_status(managed.iter().map(Managed::status).collect());
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
    events: &Reporting<'_>,
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
                serve(cert, &parsed, live, events.events, false);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(certificate = %name, %err, "stored ACME certificate unusable: ordering a new one")
            }
        },
        Ok(None) => {}
        Err(err) => tracing::warn!(certificate = %name, %err, "ACME storage unreadable"),
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
            fail(cert, &err, false, events.events);
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
            events.orders.obtained.increment(1);
            serve(cert, &parsed, live, events.events, true);
        }
        Err((err, rate_limited)) => {
            events.orders.failed.increment(1);
            fail(cert, &err, rate_limited, events.events);
        }
    }
    cert.forced = false;
}

/// Serves `parsed` for `cert`'s names from now on; `ordered` when this replica just obtained
/// it (a certificate found in storage at start is not news; one replacing another is).
fn serve(cert: &mut Managed, parsed: &Parsed, live: &LiveCerts, events: &EventLog, ordered: bool) {
    live.install(&cert.wanted.names, &parsed.key);
    let before = cert.served.replace((parsed.not_after, parsed.renew_at));
    cert.due = parsed.renew_at.min(SystemTime::now() + LOOK_AGAIN);
    cert.failures = 0;
    cert.failed = None;
    let names = cert.wanted.names.clone();
    let not_after = timestamp(parsed.not_after);
    tracing::info!(certificate = %names[0], %not_after, ordered, "ACME certificate served");
    let time = timestamp(SystemTime::now());
    match (before, ordered) {
        (Some(_), _) => events.publish(Event::CertificateRenewed {
            names,
            not_after,
            time,
        }),
        (None, true) => events.publish(Event::CertificateObtained {
            names,
            not_after,
            time,
        }),
        (None, false) => {}
    }
}

/// Counts a failure of `cert` and sets its next attempt.
fn fail(cert: &mut Managed, err: &str, rate_limited: bool, events: &EventLog) {
    cert.failures = cert.failures.saturating_add(1);
    let wait = backoff(cert.failures, rate_limited);
    let retry_at = SystemTime::now() + wait;
    cert.due = retry_at;
    cert.failed = Some((err.to_owned(), retry_at));
    tracing::warn!(certificate = %cert.wanted.names[0], %err, retry_in = ?wait, "ACME order failed");
    events.publish(Event::CertificateFailed {
        names: cert.wanted.names.clone(),
        error: err.to_owned(),
        retry_at: timestamp(retry_at),
        time: timestamp(SystemTime::now()),
    });
}

/// The wait before attempt `failures + 1`: doubling from `FIRST_BACKOFF` up to `MAX_BACKOFF`,
/// at least `RATE_LIMITED` after a rate limit, less up to a quarter at random so replicas and
/// certificates that failed together do not retry together.
fn backoff(failures: u32, rate_limited: bool) -> Duration {
    let doubled = FIRST_BACKOFF
        .checked_mul(1u32 << failures.saturating_sub(1).min(20))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF);
    let wait = if rate_limited {
        doubled.max(RATE_LIMITED)
    } else {
        doubled
    };
    wait.mul_f64(1.0 - fastrand::f64() / 4.0)
}

/// A certificate ready to serve, with its dates.
struct Parsed {
    key: Arc<CertifiedKey>,
    not_after: SystemTime,
    /// When a third of its lifetime is left.
    renew_at: SystemTime,
}

/// `issued` as rustls serves it, if it covers `names` and its key matches.
fn parse(issued: &Issued, names: &[String]) -> Result<Parsed, String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("chain: {e}"))?;
    let leaf = chain.first().ok_or("an empty chain")?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|e| format!("key: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("leaf: {e}"))?;
    let covered = crate::config::certificate_names(&cert);
    if let Some(missing) = names.iter().find(|n| !covered.contains(n)) {
        return Err(format!("it does not cover {missing}"));
    }
    let at = |seconds: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    let not_before = at(cert.validity().not_before.timestamp());
    let not_after = at(cert.validity().not_after.timestamp());
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let renew_at = not_after
        .checked_sub(lifetime / 3)
        .ok_or("an impossible validity")?;
    let signing = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("key: {e}"))?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|e| format!("key: {e}"))?;
    Ok(Parsed {
        key: Arc::new(key),
        not_after,
        renew_at,
    })
}

/// The account: from storage, else created (and stored).
async fn account(config: &AcmeConfig, storage: &Storage) -> Result<Account, String> {
    let builder = || {
        client::for_directory(config.ca.as_deref())
            .map(Account::builder_with_http)
            .map_err(|e| format!("ACME client: {e}"))
    };
    if let Some(json) = storage.account().await? {
        let credentials: AccountCredentials =
            serde_json::from_str(&json).map_err(|e| format!("stored account: {e}"))?;
        return builder()?
            .from_credentials(credentials)
            .await
            .map_err(|e| e.to_string());
    }
    let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
    let eab = config
        .eab
        .as_ref()
        .map(|eab| ExternalAccountKey::new(eab.kid.clone(), &eab.hmac_key));
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let mut tries = 0;
    let (account, credentials) = loop {
        let created = builder()?
            .create(&new, config.directory.clone(), eab.as_ref())
            .await;
        match created {
            Err(err) if order::bad_nonce(&err) && tries < order::NONCE_TRIES => tries += 1,
            other => break other.map_err(|e| e.to_string())?,
        }
    };
    let json = serde_json::to_string(&credentials).map_err(|e| e.to_string())?;
    let kept = storage.save_account(&json).await?;
    if kept == json {
        return Ok(account);
    }
    // Another replica created and stored one first: use that one, as the fleet's.
    let credentials: AccountCredentials =
        serde_json::from_str(&kept).map_err(|e| format!("stored account: {e}"))?;
    builder()?
        .from_credentials(credentials)
        .await
        .map_err(|e| e.to_string())
}

async fn open_storage(config: &AcmeConfig, fleet: Option<&FleetConfig>) -> Storage {
    match (&config.storage, fleet) {
        (AcmeStorage::Redis, Some(fleet)) => loop {
            let connected = async {
                let client = redis::Client::open(fleet.redis.as_str())?;
                let conn = crate::redis_link::manager(&client).await?;
                Ok::<_, redis::RedisError>((client, conn))
            };
            match connected.await {
                Ok((client, conn)) => {
                    break Storage::Redis {
                        client,
                        conn,
                        prefix: format!("switchyard:acme:{}", config.directory),
                        replica: fleet.replica.clone(),
                    };
                }
                Err(err) => {
                    tracing::warn!(%err, "ACME storage: Redis unreachable, retrying");
                    tokio::time::sleep(FIRST_BACKOFF).await;
                }
            }
        },
        (AcmeStorage::Directory(root), _) => Storage::directory(root, &config.directory),
        // Checked when the config was read: Redis storage needs [fleet].
        (AcmeStorage::Redis, None) => {
            Storage::directory(AcmeConfig::DEFAULT_STORAGE.as_ref(), &config.directory)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_waits_long_after_a_rate_limit() {
        for _ in 0..50 {
            let first = backoff(1, false);
            assert!(first <= FIRST_BACKOFF && first >= FIRST_BACKOFF.mul_f64(0.75));
            let third = backoff(3, false);
            assert!(third <= FIRST_BACKOFF * 4 && third >= FIRST_BACKOFF * 3);
            assert!(backoff(u32::MAX, false) <= MAX_BACKOFF);
            assert!(backoff(1, true) >= RATE_LIMITED.mul_f64(0.75));
        }
    }
}
