//! Where the ACME account and certificates are kept: files in a directory (one replica), or
//! the fleet's Redis (every replica, with an order lock per certificate so one orders it).
//!
//! Directory layout, per CA (its directory URL's host and port): `<host>/account.json`, and
//! `<host>/<first name>/{cert.pem,key.pem}`; files are written to a temporary name with mode
//! 0600 and renamed, so a crash never leaves half a key. Redis keys:
//! `switchyard:acme:<directory URL>:account` and `...:cert:<first name>` (JSON of chain and
//! key), `...:lock:<first name>` (the replica ordering it, with an expiry).

use super::order::Issued;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long an order lock holds if its replica dies mid-order.
const LOCK_FOR: Duration = Duration::from_secs(180);

/// Where ACME state is kept.
pub enum Storage {
    /// Files under this directory (the CA's own subdirectory).
    Directory(PathBuf),
    /// The fleet's Redis, keys under this prefix; `replica` names the lock holder.
    Redis {
        /// For subscriptions.
        client: redis::Client,
        /// The connection.
        conn: ConnectionManager,
        /// `switchyard:acme:<directory URL>`.
        prefix: String,
        /// This replica's name.
        replica: String,
    },
}

/// A storage failure, said in words for the log and the event stream.
pub type StorageError = String;

impl Storage {
    /// The directory for `directory_url`'s state under `root`.
    pub fn directory(root: &Path, directory_url: &str) -> Self {
        let host = directory_url
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| uri.authority().map(|a| a.as_str().replace(':', "_")))
            .unwrap_or_else(|| "acme".to_owned());
        Self::Directory(root.join(host))
    }

    /// The stored account credentials (JSON), if any.
    pub async fn account(&self) -> Result<Option<String>, StorageError> {
        match self {
            Self::Directory(dir) => read(&dir.join("account.json")).await,
            Self::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                conn.get(format!("{prefix}:account"))
                    .await
                    .map_err(|e| format!("redis: {e}"))
            }
        }
    }

    /// Keeps the account credentials; in Redis, only if no other replica kept one first
    /// (returns the one kept).
    pub async fn save_account(&self, json: &str) -> Result<String, StorageError> {
        match self {
            Self::Directory(dir) => {
                write_private(&dir.join("account.json"), json.as_bytes()).await?;
                Ok(json.to_owned())
            }
            Self::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                let key = format!("{prefix}:account");
                let set: bool = conn
                    .set_nx(&key, json)
                    .await
                    .map_err(|e| format!("redis: {e}"))?;
                if set {
                    return Ok(json.to_owned());
                }
                let kept: Option<String> =
                    conn.get(&key).await.map_err(|e| format!("redis: {e}"))?;
                Ok(kept.unwrap_or_else(|| json.to_owned()))
            }
        }
    }

    /// The stored certificate named `name`, if any.
    pub async fn certificate(&self, name: &str) -> Result<Option<Issued>, StorageError> {
        match self {
            Self::Directory(dir) => {
                let dir = dir.join(name);
                let Some(chain_pem) = read(&dir.join("cert.pem")).await? else {
                    return Ok(None);
                };
                let Some(key_pem) = read(&dir.join("key.pem")).await? else {
                    return Ok(None);
                };
                Ok(Some(Issued { chain_pem, key_pem }))
            }
            Self::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                let json: Option<String> = conn
                    .get(format!("{prefix}:cert:{name}"))
                    .await
                    .map_err(|e| format!("redis: {e}"))?;
                // Checked again by the caller (the chain parsed, the key matched) before use.
                Ok(json.and_then(|json| serde_json::from_str::<Stored>(&json).ok()))
                    .map(|stored| stored.map(Issued::from))
            }
        }
    }

    /// Keeps `issued` as the certificate named `name`.
    pub async fn save_certificate(&self, name: &str, issued: &Issued) -> Result<(), StorageError> {
        match self {
            Self::Directory(dir) => {
                let dir = dir.join(name);
                // The key first: a chain is never kept without the key it goes with.
                write_private(&dir.join("key.pem"), issued.key_pem.as_bytes()).await?;
                write_private(&dir.join("cert.pem"), issued.chain_pem.as_bytes()).await
            }
            Self::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                let json = serde_json::to_string(&Stored::from(issued))
                    .map_err(|e| format!("encoding the certificate: {e}"))?;
                conn.set::<_, _, ()>(format!("{prefix}:cert:{name}"), json)
                    .await
                    .map_err(|e| format!("redis: {e}"))?;
                // Every replica takes it now rather than at its next look.
                let _: Result<i64, _> = conn
                    .publish(format!("{prefix}:changed"), format!("cert:{name}"))
                    .await;
                Ok(())
            }
        }
    }

    /// Takes the order lock for `name`: `false` when another replica holds it (it is
    /// ordering; its certificate will be in storage). Always `true` for a directory.
    pub async fn lock(&self, name: &str) -> Result<bool, StorageError> {
        match self {
            Self::Directory(_) => Ok(true),
            Self::Redis {
                conn,
                prefix,
                replica,
                ..
            } => {
                let mut conn = conn.clone();
                let held: Option<String> = conn
                    .get(format!("{prefix}:lock:{name}"))
                    .await
                    .map_err(|e| format!("redis: {e}"))?;
                if held.as_deref() == Some(replica.as_str()) {
                    // Ours, from before a restart.
                    return Ok(true);
                }
                let taken: Option<String> = redis::cmd("SET")
                    .arg(format!("{prefix}:lock:{name}"))
                    .arg(replica)
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(LOCK_FOR.as_millis()).unwrap_or(u64::MAX))
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("redis: {e}"))?;
                Ok(taken.is_some())
            }
        }
    }

    /// Lets go of the order lock for `name`, if this replica holds it.
    pub async fn unlock(&self, name: &str) {
        if let Self::Redis {
            conn,
            prefix,
            replica,
            ..
        } = self
        {
            let mut conn = conn.clone();
            let script = redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            );
            let released: Result<i64, _> = script
                .key(format!("{prefix}:lock:{name}"))
                .arg(replica)
                .invoke_async(&mut conn)
                .await;
            if let Err(err) = released {
                tracing::warn!(%err, certificate = name, "ACME order lock not released: it expires by itself");
            }
        }
    }
}

/// A certificate as Redis keeps it: its chain and key, PEM.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    chain: String,
    key: String,
}

impl From<&Issued> for Stored {
    fn from(issued: &Issued) -> Self {
        Self {
            chain: issued.chain_pem.clone(),
            key: issued.key_pem.clone(),
        }
    }
}

impl From<Stored> for Issued {
    fn from(stored: Stored) -> Self {
        Self {
            chain_pem: stored.chain,
            key_pem: stored.key,
        }
    }
}

async fn read(path: &Path) -> Result<Option<String>, StorageError> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("{}: {err}", path.display())),
    }
}

/// Writes `bytes` to `path` whole or not at all, readable by this user only.
async fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let shown = path.display().to_string();
    let path = path.to_owned();
    let bytes = bytes.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let temporary = path.with_extension("tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(dir)?.sync_all()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("{shown}: {e}"))
}
