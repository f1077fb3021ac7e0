//! Config reloads: triggered by SIGHUP, a change to the config file or to a certificate or key
//! file it names (watched, debounced) or the admin API. Parsing and validation run here, off
//! the request path; a bad config changes nothing and every problem is reported with
//! `file:line:col`.

use crate::config::{self, Config};
use crate::control::{Command, ControlHandle};
use crate::events::ReloadSummary;
use crate::listeners::Listeners;
use crate::metrics::Metrics;
use crate::upstream::timestamp;
use arc_swap::ArcSwap;
use counters::ReloadMetrics;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use watch::{hangup_signals, read_all, recv_signal, watch_files};

mod counters;
mod watch;

/// The config in force, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct RunningConfig {
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    /// Its text.
    #[serde(skip)]
    pub text: Option<String>,
    /// Generation in force (1 at start).
    pub generation: u64,
    /// The last reload attempt, if any.
    pub last_reload: Option<ReloadRecord>,
}

/// One reload attempt.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadRecord {
    /// What asked for it: `signal`, `file`, `certificate`, or `api`.
    pub trigger: &'static str,
    /// When (RFC 3339).
    pub time: String,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: ReloadOutcome,
}

/// How a reload ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// The new config is in force.
    Applied {
        /// What changed.
        changes: Box<ReloadSummary>,
    },
    /// The old config is still in force.
    Rejected {
        /// Every problem, as `file:line:col: message` where the file was readable.
        problems: Vec<String>,
    },
}

/// A request to reload, with where to send the outcome.
#[derive(Debug)]
pub struct ReloadRequest {
    /// `signal`, `file`, `certificate`, or `api`.
    pub trigger: &'static str,
    /// Gets the outcome, if the asker waits for it.
    pub reply: Option<oneshot::Sender<ReloadOutcome>>,
}

/// Runs reloads one at a time.
#[derive(Debug)]
pub struct Reloader {
    path: Option<PathBuf>,
    watch: Option<Duration>,
    control: ControlHandle,
    listeners: Listeners,
    running: Arc<ArcSwap<RunningConfig>>,
    requests: mpsc::Receiver<ReloadRequest>,
    counters: ReloadMetrics,
    /// The certificate and key files as last read, so a change is told from a mere touch.
    certificates: Vec<(PathBuf, Option<Vec<u8>>)>,
    /// The config text last rejected: the file watcher does not try the same text again, so a
    /// broken file left on disk is reported once per change of its contents.
    rejected: Option<String>,
    /// SIGHUP, listened for from construction: a signal that came before the reloader's task
    /// first ran would otherwise meet the default action and end the process.
    hangups: watch::Hangups,
    shutdown: CancellationToken,
}

impl Reloader {
    /// A reloader for the config at `path` (none: the API can only report that it cannot).
    pub fn new(
        path: Option<PathBuf>,
        config: &Config,
        text: Option<String>,
        control: ControlHandle,
        listeners: Listeners,
        metrics: &Metrics,
        shutdown: CancellationToken,
    ) -> (
        Self,
        mpsc::Sender<ReloadRequest>,
        Arc<ArcSwap<RunningConfig>>,
    ) {
        let (tx, requests) = mpsc::channel(16);
        let running = Arc::new(ArcSwap::from_pointee(RunningConfig {
            path: path.clone(),
            text,
            generation: 1,
            last_reload: None,
        }));
        let watch = config.reload.watch.then_some(config.reload.debounce);
        let reloader = Self {
            path,
            watch,
            control,
            listeners,
            running: Arc::clone(&running),
            requests,
            counters: ReloadMetrics::new(metrics),
            certificates: Vec::new(),
            rejected: None,
            hangups: hangup_signals(),
            shutdown,
        };
        (reloader, tx, running)
    }

    /// The listeners, for their bound addresses.
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// Serves reload requests, SIGHUP and file changes until shutdown.
    pub async fn run(mut self) {
        let mut hangups = self.hangups.take();
        let (file_tx, mut file_changes) = mpsc::channel::<()>(1);
        let mut _watcher = self.watch_files(&file_tx);
        // An edit made between loading the file and watching it would otherwise go unseen.
        if _watcher.is_some() && self.file_differs().await {
            let _ = file_tx.try_send(()); // a change already queued is as good
        }
        loop {
            let request = tokio::select! {
                Some(request) = self.requests.recv() => request,
                Some(()) = recv_signal(&mut hangups) => ReloadRequest { trigger: "signal", reply: None },
                Some(()) = file_changes.recv() => {
                    // Editors write in several steps: wait until the file has been quiet.
                    let debounce = self.watch.unwrap_or_default();
                    while tokio::time::timeout(debounce, file_changes.recv()).await.is_ok_and(|e| e.is_some()) {}
                    let trigger = if self.file_differs().await {
                        "file"
                    } else if self.certificates_differ() {
                        "certificate"
                    } else {
                        self.counters.watch_skipped.increment(1);
                        continue;
                    };
                    ReloadRequest { trigger, reply: None }
                }
                () = self.shutdown.cancelled() => return,
            };
            let outcome = self.reload(request.trigger).await;
            if matches!(outcome, ReloadOutcome::Applied { .. }) {
                // The files named may have changed.
                _watcher = self.watch_files(&file_tx);
            }
            if let Some(reply) = request.reply {
                if reply.send(outcome).is_err() {
                    tracing::debug!("reload finished after its asker went away");
                }
            }
        }
    }

    /// Watches the config file and every certificate and key file of the listeners, and notes
    /// what the certificate files hold now.
    fn watch_files(&mut self, changes: &mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
        let (Some(path), Some(_)) = (&self.path, self.watch) else {
            return None;
        };
        let mut files = vec![path.clone()];
        files.extend(self.listeners.certificate_files());
        self.certificates = read_all(&files[1..]);
        watch_files(files, changes.clone())
    }

    /// Whether a certificate or key file now holds something else than when last read; the
    /// new contents become the ones compared next time, so a broken file is reported once.
    fn certificates_differ(&mut self) -> bool {
        let paths: Vec<PathBuf> = self.certificates.iter().map(|(p, _)| p.clone()).collect();
        let now = read_all(&paths);
        let differ = now != self.certificates;
        self.certificates = now;
        differ
    }

    /// Whether the config file now holds text neither in force nor already rejected.
    async fn file_differs(&self) -> bool {
        let Some(path) = &self.path else { return false };
        let current = tokio::fs::read_to_string(path).await.ok();
        current != self.running.load().text && current != self.rejected
    }

    async fn reload(&mut self, trigger: &'static str) -> ReloadOutcome {
        let (outcome, applied_text) = match self.try_reload().await {
            Ok((changes, text)) => {
                self.counters.applied.increment(1);
                self.counters.succeeded(changes.generation);
                tracing::info!(
                    trigger,
                    generation = changes.generation,
                    changes = %serde_json::to_string(&changes).unwrap_or_default(),
                    "config reloaded"
                );
                (
                    ReloadOutcome::Applied {
                        changes: Box::new(changes),
                    },
                    Some(text),
                )
            }
            Err(problems) => {
                self.counters.rejected.increment(1);
                for problem in &problems {
                    tracing::error!(trigger, "config reload rejected: {problem}");
                }
                (ReloadOutcome::Rejected { problems }, None)
            }
        };
        let time = timestamp(SystemTime::now());
        // The reload event is control's to publish: an applied config's when it is applied,
        // a rejected one's when told here.
        let changes = match &outcome {
            ReloadOutcome::Applied { changes } => Some((**changes).clone()),
            ReloadOutcome::Rejected { problems } => {
                let problems = problems.clone();
                if self
                    .control
                    .commands
                    .send(Command::Rejected { problems })
                    .await
                    .is_err()
                {
                    tracing::debug!("control plane stopped; reload rejection not announced");
                }
                None
            }
        };
        self.running.rcu(|running| {
            let mut next = (**running).clone();
            if let (Some(changes), Some(text)) = (&changes, &applied_text) {
                next.generation = changes.generation;
                next.text = Some(text.clone());
            }
            next.last_reload = Some(ReloadRecord {
                trigger,
                time: time.clone(),
                outcome: outcome.clone(),
            });
            next
        });
        outcome
    }

    async fn try_reload(&mut self) -> Result<(ReloadSummary, String), Vec<String>> {
        let Some(path) = self.path.clone() else {
            return Err(vec![
                "the proxy was not started from a config file".to_owned(),
            ]);
        };
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|err| vec![format!("{}: cannot read config: {err}", path.display())])?;
        let config = config::parse(&text, &path.display().to_string()).map_err(|err| {
            self.rejected = Some(text.clone());
            err.to_string()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })?;
        self.rejected = None;
        for warning in &config.warnings {
            tracing::warn!(%warning, "config warning");
        }
        let prepared = match self
            .listeners
            .prepare(&config.listeners, &config.timeouts)
            .await
        {
            Ok(prepared) => prepared,
            Err(err) => {
                self.rejected = Some(text);
                return Err(vec![err.to_string()]);
            }
        };
        let Some(changes) = self
            .control
            .ask(|reply| Command::Apply {
                config: Box::new(config),
                reply,
            })
            .await
        else {
            return Err(vec!["the control plane has stopped".to_owned()]);
        };
        // The summary is `diff`'s alone; what the listeners did is checked against it.
        let (mut added, mut removed) = self.listeners.commit(prepared);
        added.sort();
        removed.sort();
        let (mut said_added, mut said_removed) = (
            changes.listeners_added.clone(),
            changes.listeners_removed.clone(),
        );
        said_added.sort();
        said_removed.sort();
        if (&added, &removed) != (&said_added, &said_removed) {
            tracing::error!(
                ?added, ?removed, summary_added = ?said_added, summary_removed = ?said_removed,
                "listeners changed otherwise than the reload summary says (a bug)"
            );
            debug_assert!(false, "listeners disagree with the reload summary");
        }
        Ok((changes, text))
    }
}
