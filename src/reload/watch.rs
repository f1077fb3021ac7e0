//! What triggers a reload besides the API: changes to the config file and the certificate and
//! key files it names, watched, and SIGHUP.

use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Each path with what it holds now (`None`: unreadable).
pub(super) fn read_all(paths: &[PathBuf]) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    paths
        .iter()
        .map(|p| (p.clone(), std::fs::read(p).ok()))
        .collect()
}

/// Watches the directories of `files` (editors and certificate tools often replace a file rather
/// than write it) and signals changes to any of them.
pub(super) fn watch_files(
    files: Vec<PathBuf>,
    changes: mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    // The watcher reports events under the canonical directory (`conf/x.toml` given, events
    // name `/etc/switchyard/conf/x.toml`): canonicalise each directory once, here, and leave the
    // file name as given (a symlink swapped in its place is what some deployments change).
    let dir_of = |path: &Path| {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        dir.canonicalize().unwrap_or_else(|_| dir.to_owned())
    };
    // Event paths are the watched directory joined with a file name: compare them so.
    let watched: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| Some(dir_of(f).join(f.file_name()?)))
        .collect();
    let mut dirs: Vec<PathBuf> = files.iter().map(|f| dir_of(f)).collect();
    dirs.sort();
    dirs.dedup();
    let handler = move |event: notify::Result<notify::Event>| {
        // Reading a file (as a reload does) must not look like a change.
        let touches_file = event.is_ok_and(|e| {
            !matches!(e.kind, notify::EventKind::Access(_))
                && e.paths.iter().any(|p| watched.contains(p))
        });
        if touches_file {
            // A full channel already holds a pending change: dropping this one loses nothing.
            changes.try_send(()).ok();
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::error!(%err, "cannot watch the config file; reload with SIGHUP or the API");
            return None;
        }
    };
    for dir in &dirs {
        if let Err(err) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::error!(%err, dir = %dir.display(), "cannot watch a config directory");
        }
    }
    tracing::info!(
        files = files.len(),
        "watching the config and certificate files for changes"
    );
    Some(watcher)
}

/// SIGHUP, when it can be listened for.
pub(super) type Hangups = Option<tokio::signal::unix::Signal>;

/// Starts listening for SIGHUP.
pub(super) fn hangup_signals() -> Hangups {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(signals) => Some(signals),
        Err(err) => {
            tracing::error!(%err, "cannot listen for SIGHUP; reload through the file or the API");
            None
        }
    }
}

/// The next SIGHUP (never, when it cannot be listened for).
pub(super) async fn recv_signal(signals: &mut Hangups) -> Option<()> {
    match signals {
        Some(signals) => signals.recv().await,
        None => std::future::pending().await,
    }
}
