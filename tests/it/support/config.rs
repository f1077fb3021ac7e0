//! Config fixtures built as typed TOML values rather than spliced text: keys are set by their
//! dotted path with Rust values, and the text is produced by the `toml` serializer, so a
//! fixture cannot come out malformed or put a key in the wrong table.

use std::net::SocketAddr;
use toml::{Table, Value};

/// A whole config: the test listener and admin API on ephemeral ports, no access log, plus
/// what the test adds.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    root: Table,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigBuilder {
    /// The test listener, the admin API and no access log.
    pub fn new() -> Self {
        let mut listener = Table::new();
        listener.insert("name".into(), "test".into());
        listener.insert("bind".into(), "127.0.0.1:0".into());
        Self { root: Table::new() }
            .push("listeners", listener)
            .set("admin.bind", "127.0.0.1:0")
            .set("access_log.enabled", false)
    }

    /// One pool `pool` of `backends` behind a catch-all route `all`.
    pub fn single_pool(backends: &[(&str, SocketAddr, u32)]) -> Self {
        let mut pool = PoolBuilder::new("pool");
        for (name, addr, weight) in backends {
            pool = pool.backend(name, *addr, *weight);
        }
        Self::new().pool(pool).route("all", None, "/", "pool")
    }

    /// Sets `path` (dotted, such as `timeouts.request_header`) to `value`.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Self {
        set(&mut self.root, path, value.into());
        self
    }

    /// Adds a pool.
    pub fn pool(self, pool: PoolBuilder) -> Self {
        self.push("pools", pool.table)
    }

    /// Adds a route to `pool` for `prefix`, on `host` or every host.
    pub fn route(self, name: &str, host: Option<&str>, prefix: &str, pool: &str) -> Self {
        let mut route = Table::new();
        route.insert("name".into(), name.into());
        if let Some(host) = host {
            route.insert("host".into(), host.into());
        }
        route.insert("path_prefix".into(), prefix.into());
        route.insert("pool".into(), pool.into());
        self.push("routes", route)
    }

    /// Adds a route named `name`, built by `build` (which sets its pool, or its answer, and
    /// what it matches).
    pub fn push_route(self, name: &str, build: impl FnOnce(RouteBuilder) -> RouteBuilder) -> Self {
        let mut table = Table::new();
        table.insert("name".into(), name.into());
        let route = build(RouteBuilder { table });
        self.push("routes", route.table)
    }

    /// Sets `path` (dotted, such as `tls.min_version`) of the first listener.
    pub fn set_listener(self, path: &str, value: impl Into<Value>) -> Self {
        let value = value.into();
        self.with_listener(|listener| set(listener, path, value))
    }

    /// Changes the first listener's table.
    pub fn with_listener(mut self, change: impl FnOnce(&mut Table)) -> Self {
        let first = self.root["listeners"]
            .as_array_mut()
            .and_then(|listeners| listeners.first_mut())
            .and_then(Value::as_table_mut)
            .expect("a listener to change");
        change(first);
        self
    }

    /// Changes the first route.
    pub fn with_route(mut self, change: impl FnOnce(RouteBuilder) -> RouteBuilder) -> Self {
        let routes = self.root.get_mut("routes").and_then(Value::as_array_mut);
        let first = routes
            .and_then(|r| r.first_mut())
            .expect("a route to change");
        let table = std::mem::take(first.as_table_mut().expect("a route table"));
        *first = Value::Table(change(RouteBuilder { table }).table);
        self
    }

    /// Changes the first pool (most fixtures have one).
    pub fn with_pool(mut self, change: impl FnOnce(PoolBuilder) -> PoolBuilder) -> Self {
        let pools = self.root.get_mut("pools").and_then(Value::as_array_mut);
        let first = pools.and_then(|p| p.first_mut()).expect("a pool to change");
        let table = std::mem::take(first.as_table_mut().expect("a pool table"));
        *first = Value::Table(change(PoolBuilder { table }).table);
        self
    }

    /// Adds a `[[notify.webhooks]]` receiver named `name` at `url`.
    pub fn push_webhook(mut self, name: &str, url: &str) -> Self {
        let mut webhook = Table::new();
        webhook.insert("name".into(), name.into());
        webhook.insert("url".into(), url.into());
        let notify = self
            .root
            .entry("notify")
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("notify is a table");
        push(notify, "webhooks", webhook);
        self
    }

    /// Sets `key` of the last webhook added.
    pub fn set_webhook(mut self, key: &str, value: impl Into<Value>) -> Self {
        let last = self.root["notify"]["webhooks"]
            .as_array_mut()
            .and_then(|webhooks| webhooks.last_mut())
            .and_then(Value::as_table_mut)
            .expect("a webhook to change");
        last.insert(key.to_owned(), value.into());
        self
    }

    /// The config as TOML text.
    pub fn toml(&self) -> String {
        toml::to_string(&self.root).expect("a table serializes")
    }

    fn push(mut self, array: &str, table: Table) -> Self {
        push(&mut self.root, array, table);
        self
    }
}

/// A `[[routes]]` table.
#[derive(Debug, Clone)]
pub struct RouteBuilder {
    table: Table,
}

impl RouteBuilder {
    /// Sets `path` (dotted) of the route.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Self {
        set(&mut self.table, path, value.into());
        self
    }

    /// Adds a header condition: `name` and its `test` (`exact`, `prefix`, `regex`, `present`).
    pub fn header(mut self, name: &str, test: &str, value: impl Into<Value>) -> Self {
        let mut condition = Table::new();
        condition.insert("name".into(), name.into());
        condition.insert(test.into(), value.into());
        push(&mut self.table, "headers", condition);
        self
    }

    /// Adds a query condition: parameter `name` with value `exact`, or present (`None`).
    pub fn query(mut self, name: &str, exact: Option<&str>) -> Self {
        let mut condition = Table::new();
        condition.insert("name".into(), name.into());
        match exact {
            Some(value) => condition.insert("exact".into(), value.into()),
            None => condition.insert("present".into(), true.into()),
        };
        push(&mut self.table, "query", condition);
        self
    }
}

/// A `[[pools]]` table.
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    table: Table,
}

impl PoolBuilder {
    /// A weighted round-robin pool named `name`, without backends.
    pub fn new(name: &str) -> Self {
        let mut table = Table::new();
        table.insert("name".into(), name.into());
        table.insert("algorithm".into(), "weighted_round_robin".into());
        Self { table }
    }

    /// Sets `path` (dotted, such as `health_check.interval`) to `value`.
    pub fn set(mut self, path: &str, value: impl Into<Value>) -> Self {
        set(&mut self.table, path, value.into());
        self
    }

    /// HTTP probes of `/health` every 100 ms (100 ms timeout), one failure marking a backend
    /// unhealthy: state changes within a fraction of a second.
    pub fn quick_probes(self) -> Self {
        self.set("health_check.path", "/health")
            .set("health_check.interval", "100ms")
            .set("health_check.timeout", "100ms")
            .set("health_check.unhealthy_threshold", 1)
    }

    /// Adds a backend.
    pub fn backend(mut self, name: &str, addr: SocketAddr, weight: u32) -> Self {
        let mut backend = Table::new();
        backend.insert("name".into(), name.into());
        backend.insert("address".into(), addr.to_string().into());
        backend.insert("weight".into(), i64::from(weight).into());
        push(&mut self.table, "backends", backend);
        self
    }

    /// Sets `key` of the last backend added.
    pub fn set_backend(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.last_backend().insert(key.to_owned(), value.into());
        self
    }

    fn last_backend(&mut self) -> &mut Table {
        self.table["backends"]
            .as_array_mut()
            .and_then(|backends| backends.last_mut())
            .and_then(Value::as_table_mut)
            .expect("a backend to change")
    }

    /// Active HTTP probes of `/health` every `interval`, with the given thresholds.
    pub fn http_checks(self, interval: &str, fall: i64, rise: i64) -> Self {
        self.set("health_check.path", "/health")
            .set("health_check.interval", interval)
            .set("health_check.timeout", interval)
            .set("health_check.unhealthy_threshold", fall)
            .set("health_check.healthy_threshold", rise)
    }
}

/// Appends `entry` to the array of tables `array` (`[[array]]`).
fn push(table: &mut Table, array: &str, entry: Table) {
    table
        .entry(array)
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .unwrap_or_else(|| panic!("{array} is not an array of tables"))
        .push(Value::Table(entry));
}

fn set(table: &mut Table, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let inner = table
                .entry(head)
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{head} is not a table"));
            set(inner, rest, value);
        }
    }
}

/// The problems `switchyard::config::parse` finds in `text`, as `line:col: message`; fails the
/// test if there are none.
pub fn problems(text: &str) -> Vec<String> {
    match switchyard::config::parse(text, "x.toml") {
        Ok(_) => panic!("config unexpectedly valid:\n{text}"),
        Err(switchyard::config::ConfigError::Invalid { origin, problems }) => {
            assert_eq!(origin, "x.toml");
            problems
                .iter()
                .map(|p| format!("{}:{}: {}", p.line, p.col, p.message))
                .collect()
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// Fails the test unless `text` has a problem at `at` (`line:col:`) containing `needle`.
pub fn assert_problem(text: &str, at: &str, needle: &str) {
    let found = problems(text);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with(at) && p.contains(needle)),
        "expected a problem at {at} containing {needle:?}, got {found:#?}\n---\n{text}"
    );
}

/// A route to a pool of one backend: what a config needs besides its listeners, for tests of
/// the other sections.
pub const VALID_TAIL: &str = r#"
[[routes]]
name = "r"
pool = "p"

[[pools]]
name = "p"
[[pools.backends]]
name = "b"
address = "127.0.0.1:9000"
"#;
