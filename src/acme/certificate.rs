//! An obtained certificate made ready to serve (chain and key checked, names covered, dates
//! read), and when to renew it where the CA offers renewal information (ARI, RFC 9773).

use super::order::Issued;
use crate::config::crypto_provider;
use instant_acme::Account;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long to wait before asking again for renewal information the CA did not give (or does
/// not offer), and the bounds put on the wait the CA asks for.
pub(super) const ARI_AGAIN: Duration = Duration::from_secs(6 * 3600);
const ARI_AGAIN_LEAST: Duration = Duration::from_secs(60);

/// When the CA's renewal window says to renew `leaf`, and when to ask again; `None` when the
/// CA offers no ARI or its answer cannot be used.
pub(super) async fn ari(
    account: &Account,
    leaf: &CertificateDer<'_>,
    now: SystemTime,
) -> Option<(SystemTime, Duration)> {
    let id = instant_acme::CertificateIdentifier::try_from(leaf).ok()?;
    let (info, again) = account.renewal_info(&id).await.ok()?;
    let at = |unix: i64| UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(unix).ok()?));
    let window = &info.suggested_window;
    let (start, end) = (
        at(window.start.unix_timestamp())?,
        at(window.end.unix_timestamp())?,
    );
    let pick = pick_in_window(start, end, now, fastrand::f64());
    Some((pick, again.clamp(ARI_AGAIN_LEAST, ARI_AGAIN)))
}

/// A time in the window from `start` to `end`, at `random` (0 to 1) of the way (RFC 9773,
/// section 4.2: clients spread out over it); `now` when the window has passed or is backwards.
fn pick_in_window(start: SystemTime, end: SystemTime, now: SystemTime, random: f64) -> SystemTime {
    if end <= start || end <= now {
        return now;
    }
    let from = start.max(now);
    from + end
        .duration_since(from)
        .unwrap_or_default()
        .mul_f64(random.clamp(0.0, 1.0))
}

/// A certificate ready to serve, with its dates.
pub(super) struct Parsed {
    pub(super) key: Arc<CertifiedKey>,
    pub(super) not_after: SystemTime,
    /// When a third of its lifetime is left.
    pub(super) renew_at: SystemTime,
}

/// `issued` as rustls serves it, if it covers `names` and its key matches.
pub(super) fn parse(issued: &Issued, names: &[String]) -> Result<Parsed, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_window_gives_a_time_inside_it_or_now_once_it_has_begun_or_passed() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(pick_in_window(at(100), at(200), at(50), 0.0), at(100));
        assert_eq!(pick_in_window(at(100), at(200), at(50), 0.5), at(150));
        assert_eq!(pick_in_window(at(100), at(200), at(150), 1.0), at(200));
        assert_eq!(pick_in_window(at(100), at(200), at(150), 0.5), at(175));
        assert_eq!(
            pick_in_window(at(100), at(200), at(250), 0.5),
            at(250),
            "passed"
        );
        assert_eq!(
            pick_in_window(at(200), at(100), at(50), 0.5),
            at(50),
            "backwards"
        );
    }
}
