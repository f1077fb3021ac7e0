//! The ACME account (from storage, else created and stored: in fleet mode the first replica's
//! is everyone's) and the storage it is kept in.

use super::FIRST_BACKOFF;
use super::client;
use super::order;
use super::storage::Storage;
use crate::config::{AcmeConfig, AcmeStorage, FleetConfig};
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};

/// The account: from storage, else created (and stored).
pub(super) async fn account(
    config: &AcmeConfig,
    storage: &Storage,
    retry_after: &client::RetryAfter,
) -> Result<Account, String> {
    let builder = || {
        client::for_directory(config.ca.as_deref(), retry_after)
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

pub(super) async fn open_storage(config: &AcmeConfig, fleet: Option<&FleetConfig>) -> Storage {
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
