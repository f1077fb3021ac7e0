//! Guards the layering in DESIGN.md: every top-level module uses only its own tier and those
//! below it, with no circle between modules; the data plane never takes a lock, and never
//! reaches up into the control plane or the config file format.

use std::path::Path;

const DATA_PLANE: &[&str] = &[
    "src/body.rs",
    "src/server",
    "src/tls.rs",
    "src/proxy",
    "src/snapshot.rs",
    "src/upstream",
    "src/balance",
    "src/route",
];

fn rust_files(path: &Path, out: &mut Vec<(String, String)>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read source dir") {
            rust_files(&entry.expect("dir entry").path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        let text = std::fs::read_to_string(path).expect("read source file");
        out.push((path.display().to_string(), text));
    }
}

fn data_plane_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for part in DATA_PLANE {
        rust_files(&root.join(part), &mut files);
    }
    assert!(files.len() >= 8, "data-plane sources not found: {files:?}");
    files
}

#[test]
fn data_plane_takes_no_mutex_or_rwlock() {
    for (path, text) in data_plane_sources() {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for lock in ["Mutex", "RwLock", "parking_lot", "std::sync::Condvar"] {
                assert!(
                    !code.contains(lock),
                    "{path}:{}: {lock} on the data plane: {line}",
                    n + 1
                );
            }
        }
    }
}

#[test]
fn data_plane_does_not_import_the_control_plane_or_the_file_format() {
    for (path, text) in data_plane_sources() {
        for forbidden in [
            "crate::control",
            "crate::reload",
            "crate::health",
            "crate::admin",
            "config::file",
        ] {
            assert!(!text.contains(forbidden), "{path} imports {forbidden}");
        }
    }
}

#[test]
fn health_checking_never_imports_the_control_plane() {
    // Probers report in a type of their own; the control plane depends on them, never the
    // other way round, so the two cannot grow into a cycle.
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/health"),
        &mut files,
    );
    assert!(files.len() >= 3, "health sources not found: {files:?}");
    for (path, text) in files {
        for forbidden in ["crate::control", "super::super::control"] {
            assert!(!text.contains(forbidden), "{path} imports {forbidden}");
        }
    }
}

#[test]
fn upstream_connections_come_from_our_own_pool() {
    // hyper-util's pooled client takes a mutex on every checkout and check-in; the per-backend
    // pools (src/upstream/pool/) replace it, on hyper's connection API. The ACME client's few
    // requests a day to the CA (src/acme/client.rs) are the one use allowed.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for (path, text) in files {
        if path.ends_with("src/acme/client.rs") {
            continue;
        }
        assert!(
            !text.contains("client::legacy"),
            "{path} uses hyper-util's legacy client"
        );
    }
    let pool = std::fs::read_to_string(root.join("src/upstream/pool/idle.rs")).expect("pool");
    assert!(
        pool.contains("AtomicCell"),
        "the idle stack is made of atomic cells"
    );
}

/// Each top-level module's tier (DESIGN.md's table): a module may use its own tier and those
/// below it, never one above.
const TIERS: &[(&str, u8)] = &[
    ("config", 1),
    ("body", 1),
    ("events", 1),
    ("error", 1),
    ("metrics", 1),
    ("dormant", 1),
    ("redis_link", 1),
    ("balance", 2),
    ("route", 2),
    ("upstream", 2),
    ("snapshot", 2),
    ("live_certs", 2),
    ("acme", 4),
    ("ocsp", 4),
    ("server", 3),
    ("tls", 3),
    ("proxy", 3),
    ("access_log", 3),
    ("listeners", 3),
    ("health", 4),
    ("discovery", 4),
    ("fleet", 4),
    ("fleet_limits", 4),
    ("fleet_sticky", 4),
    ("notify", 4),
    ("keeper", 4),
    ("control", 5),
    ("reload", 6),
    ("admin", 6),
    ("gateway", 7),
    ("shutdown", 7),
    ("demo", 7),
    ("lib", 7),
];

/// The binary's own files: their `crate::` is the binary, which uses the library as a whole.
const BINARY: &[&str] = &["main", "check", "cli", "register"];

/// The top-level module a source file belongs to (`src/control/apply.rs` → `control`).
fn module_of(path: &Path) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let relative = path.strip_prefix(&src).expect("a file under src/");
    let first = relative.components().next().expect("a path");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// Every `crate::MODULE` a file names in code (comments left out).
fn crate_modules_used(text: &str) -> std::collections::BTreeSet<String> {
    let mut used = std::collections::BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (i, _) in code.match_indices("crate::") {
            if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue; // `switchyard_crate::` and the like
            }
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

/// Every import between top-level modules: none runs up a tier, and none closes a circle
/// between modules (each module's own files may use each other freely).
#[test]
fn modules_import_only_their_tier_and_below_and_never_in_a_circle() {
    let tier = |module: &str| {
        TIERS
            .iter()
            .find(|(name, _)| *name == module)
            .map(|(_, tier)| *tier)
            .unwrap_or_else(|| panic!("module {module} has no tier: add it to TIERS and DESIGN.md"))
    };
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    let mut upward = Vec::new();
    for (path, text) in &files {
        let from = module_of(Path::new(path));
        if BINARY.contains(&from.as_str()) {
            continue;
        }
        for to in crate_modules_used(text) {
            if to == from {
                continue;
            }
            if tier(&to) > tier(&from) {
                upward.push(format!(
                    "{path} (tier {}) uses crate::{to} (tier {})",
                    tier(&from),
                    tier(&to)
                ));
            }
            edges.entry(from.clone()).or_default().insert(to);
        }
    }
    assert!(
        upward.is_empty(),
        "imports up a tier:\n{}",
        upward.join("\n")
    );
    // A circle shows as a module reachable from itself.
    for start in edges.keys() {
        let mut stack: Vec<&String> = edges[start].iter().collect();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(module) = stack.pop() {
            assert!(
                module != start,
                "module {start} reaches itself through its imports"
            );
            if seen.insert(module) {
                stack.extend(edges.get(module).into_iter().flatten());
            }
        }
    }
}
