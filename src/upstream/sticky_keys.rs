//! The keys sticky cookies are signed with: a pool's own, from its secret files, or the
//! fleet's, from Redis, shared by every replica and every pool that asks for them.
//!
//! A key's id is the start of its secret's SHA-256, so replicas given the same secret name it
//! alike. The fleet's keys change when another replica rotates them; until Redis answers,
//! a replica signs with a local key of its own, still accepted afterwards.

use arc_swap::ArcSwap;
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

/// Bytes of a secret the fleet generates.
pub const FLEET_SECRET_BYTES: usize = 32;

/// Signing keys: (id, key), the current one first, then those still accepted.
#[derive(Debug)]
pub struct Keys(Vec<(String, hmac::Key)>);

impl Keys {
    /// The keys of `secrets`, the current one first.
    pub fn from_secrets<S: AsRef<[u8]>>(secrets: &[S]) -> Self {
        Self(
            secrets
                .iter()
                .map(|secret| {
                    let secret = secret.as_ref();
                    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
                    let id = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..6]);
                    (id, hmac::Key::new(hmac::HMAC_SHA256, secret))
                })
                .collect(),
        )
    }

    /// The key new cookies are signed with, and its id.
    pub fn current(&self) -> Option<&(String, hmac::Key)> {
        self.0.first()
    }

    /// The key named `id`, if it is accepted, and whether it is the current one.
    pub fn find(&self, id: &str) -> Option<(&hmac::Key, bool)> {
        let position = self.0.iter().position(|(key_id, _)| key_id == id)?;
        Some((&self.0[position].1, position == 0))
    }

    /// The ids, current first.
    pub fn ids(&self) -> Vec<&str> {
        self.0.iter().map(|(id, _)| id.as_str()).collect()
    }
}

/// The fleet's keys as this replica last heard them, shared by the pools using them.
#[derive(Debug)]
pub struct FleetKeys {
    keys: ArcSwap<Keys>,
    /// Rises at each change: a pool's memory of verified cookies is emptied when it sees it.
    generation: AtomicU64,
    /// This replica's own key, signing until the fleet's arrive and accepted after.
    local: Vec<u8>,
    /// An operator asked for a new key.
    rotation: Notify,
}

impl Default for FleetKeys {
    fn default() -> Self {
        let local = random_secret();
        Self {
            keys: ArcSwap::from_pointee(Keys::from_secrets(&[&local])),
            generation: AtomicU64::new(0),
            local,
            rotation: Notify::new(),
        }
    }
}

impl FleetKeys {
    /// The keys in force.
    pub fn load(&self) -> arc_swap::Guard<Arc<Keys>> {
        self.keys.load()
    }

    /// Which change of the keys is in force.
    pub fn generation(&self) -> u64 {
        // Relaxed: a changed number only empties a cache; the keys themselves are published
        // by the swap.
        self.generation.load(Ordering::Relaxed)
    }

    /// Takes the fleet's secrets (current first); this replica's own key stays accepted.
    pub fn install(&self, secrets: &[Vec<u8>]) {
        let mut all: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
        all.push(&self.local);
        let keys = Keys::from_secrets(&all);
        if keys.ids() != self.keys.load().ids() {
            self.keys.store(Arc::new(keys));
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the fleet task for a new current key (the current one stays accepted).
    pub fn request_rotation(&self) {
        self.rotation.notify_one();
    }

    /// Resolves when an operator asked for a new key.
    pub async fn rotation_requested(&self) {
        self.rotation.notified().await;
    }
}

/// A fresh secret from the system's generator.
pub fn random_secret() -> Vec<u8> {
    let mut secret = vec![0u8; FLEET_SECRET_BYTES];
    aws_lc_rs::rand::fill(&mut secret).expect("the system's random generator works");
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_keys_sign_once_installed_and_the_local_key_stays_accepted() {
        let fleet = FleetKeys::default();
        let local = fleet.load().current().unwrap().0.clone();
        assert_eq!(fleet.generation(), 0);
        let (a, b) = (vec![1u8; 32], vec![2u8; 32]);
        fleet.install(std::slice::from_ref(&a));
        let ids: Vec<String> = fleet.load().ids().iter().map(|s| s.to_string()).collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[1], local);
        assert_eq!(fleet.generation(), 1);
        // The same secrets again change nothing.
        fleet.install(std::slice::from_ref(&a));
        assert_eq!(fleet.generation(), 1);
        fleet.install(&[b, a]);
        let keys = fleet.load();
        assert_eq!(keys.ids().len(), 3);
        assert_eq!(keys.find(&ids[0]).map(|(_, current)| current), Some(false));
        assert_eq!(fleet.generation(), 2);
    }
}
