//! State of the access policies that outlives one config: limiter tables, fleet shares and
//! fetched key sets, found again by each new router for the rules and URLs it keeps. Written
//! only when a config is applied; lock-free maps all the same, as everything under `route/`.

use super::{fleet, jwt, limit};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// What the access policies keep across configs; the control plane's.
#[derive(Debug)]
pub struct Shelf {
    tables: papaya::HashMap<String, Arc<limit::Table>>,
    shares: papaya::HashMap<String, Arc<fleet::FleetShare>>,
    key_sets: papaya::HashMap<String, Fetched>,
    /// What the config being applied uses, by id.
    used: papaya::HashSet<String>,
    /// Hashes text keys; one random key per process.
    pub hasher: std::hash::RandomState,
    /// Where fleet rules send the keys whose lease runs low.
    wants: UnboundedSender<fleet::Want>,
}

/// A key set fetched from a URL, and how often.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Where from.
    pub url: http::Uri,
    /// How often.
    pub refresh: Duration,
    /// The keys.
    pub keys: Arc<jwt::KeySet>,
}

/// What the keeper looks after.
#[derive(Debug, Default)]
pub struct Chores {
    /// Limiter tables, for their size gauge, with their label.
    pub tables: Vec<(String, Arc<limit::Table>)>,
    /// Key sets to fetch.
    pub key_sets: Vec<Fetched>,
    /// Fleet rules' shares.
    pub shares: Vec<(String, Arc<fleet::FleetShare>)>,
}

impl Default for Shelf {
    /// A shelf whose fleet rules' wants go nowhere (no fleet).
    fn default() -> Self {
        Self::new(tokio::sync::mpsc::unbounded_channel().0)
    }
}

impl Shelf {
    /// An empty shelf; fleet rules send their wants to `wants` (the leaser).
    pub fn new(wants: UnboundedSender<fleet::Want>) -> Self {
        Self {
            tables: papaya::HashMap::new(),
            shares: papaya::HashMap::new(),
            key_sets: papaya::HashMap::new(),
            used: papaya::HashSet::new(),
            hasher: std::hash::RandomState::new(),
            wants,
        }
    }

    pub(super) fn table(&self, id: String) -> Arc<limit::Table> {
        self.used.pin().insert(id.clone());
        Arc::clone(self.tables.pin().get_or_insert_with(id, Default::default))
    }

    pub(super) fn share(
        &self,
        id: String,
        make: impl FnOnce(UnboundedSender<fleet::Want>) -> fleet::FleetShare,
    ) -> Arc<fleet::FleetShare> {
        self.used.pin().insert(id.clone());
        let wants = self.wants.clone();
        Arc::clone(
            self.shares
                .pin()
                .get_or_insert_with(id, || Arc::new(make(wants))),
        )
    }

    pub(super) fn key_set(&self, url: &http::Uri, refresh: Duration) -> Arc<jwt::KeySet> {
        let id = url.to_string();
        self.used.pin().insert(id.clone());
        let key_sets = self.key_sets.pin();
        let fetched = key_sets.get_or_insert_with(id.clone(), || Fetched {
            url: url.clone(),
            refresh,
            keys: Arc::new(jwt::KeySet::new(Vec::new())),
        });
        if refresh < fetched.refresh {
            // Two routes on one URL: it is fetched as often as the more eager wants.
            let sooner = Fetched {
                refresh,
                ..fetched.clone()
            };
            key_sets.insert(id, sooner);
        }
        Arc::clone(&fetched.keys)
    }

    /// Forgets what the config just applied no longer uses.
    pub fn settle(&self) {
        let used = self.used.pin();
        self.tables.pin().retain(|id, _| used.contains(id));
        self.shares.pin().retain(|id, _| used.contains(id));
        self.key_sets.pin().retain(|id, _| used.contains(id));
        used.clear();
    }

    /// What the keeper should look after now.
    pub fn chores(&self) -> Chores {
        Chores {
            tables: pairs(&self.tables),
            key_sets: self.key_sets.pin().values().cloned().collect(),
            shares: pairs(&self.shares),
        }
    }
}

fn pairs<T>(map: &papaya::HashMap<String, Arc<T>>) -> Vec<(String, Arc<T>)> {
    map.pin()
        .iter()
        .map(|(id, v)| (id.clone(), Arc::clone(v)))
        .collect()
}
