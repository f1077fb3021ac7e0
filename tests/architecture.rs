//! Guards the layering in DESIGN.md: the data plane never takes a lock, and never reaches up
//! into the control plane or the config file format.

use std::path::Path;

const DATA_PLANE: &[&str] = &[
    "src/body.rs",
    "src/server",
    "src/tls.rs",
    "src/proxy",
    "src/snapshot.rs",
    "src/upstream",
    "src/balance",
    "src/route.rs",
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
    // pools (src/upstream/pool/) replace it, on hyper's connection API.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for (path, text) in files {
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
