//! GitOps directory sync: watch a directory tree of manifests and keep the server's resources
//! equal to it.
//!
//! - Changes are debounced ([`SyncSource::debounce`], 500 ms of quiet by default), so an
//!   editor's save storm or a `git pull` applies once.
//! - The whole directory is one set: every resource is labelled
//!   `berth.dev/sync-source=<name>` ([`SYNC_SOURCE_LABEL`]) and applied in one request that
//!   prunes what carries that label but is no longer in the directory. Resources applied by
//!   hand do not carry the label and are never pruned.
//! - A broken set (a file that does not parse or validate, the same resource twice) is
//!   reported — a log line per problem, [`SyncStatus::last_error`], and
//!   [`Apply::report_error`] (an audit event when applied in the server) — and nothing of it is
//!   applied: the last good state stays in force.
//! - File events come from the OS (inotify and friends); where they are unavailable, or with
//!   [`SyncSource::poll`], the tree is polled.
//! - When the directory is a Git work tree, `git rev-parse HEAD` is recorded with each apply.
//!
//! [`run_sync`] is the loop; the [`Apply`] seam lets `berth sync` go through the REST API
//! ([`HttpApplier`]) and `berth serve --sync-dir` apply straight to the store
//! ([`StoreApplier`]).

mod http;
mod store;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::service::resources::ApplyDocument;
use berth_schemas::DynamicObject;
use chrono::Utc;
use notify::Watcher;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::manifests::{Input, Problem, parse_documents, read_inputs};

pub use http::HttpApplier;
#[allow(unused_imports)] // called by `berth serve --sync-dir` (src/cmd/serve.rs)
pub use store::StoreApplier;

/// The label every synced resource carries; its value names the sync source.
pub const SYNC_SOURCE_LABEL: &str = "berth.dev/sync-source";

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct SyncSource {
    /// The directory of manifests (searched recursively; hidden entries such as `.git` are
    /// skipped).
    pub dir: PathBuf,
    /// The source's name, the value of [`SYNC_SOURCE_LABEL`] (a label value: letters, digits,
    /// `-`, `_`, `.`).
    pub name: String,
    /// How long the tree must be quiet before a change is applied.
    pub debounce: Duration,
    /// Poll the tree instead of using file events.
    pub poll: bool,
    /// How often to poll (with `poll`, or when file events are unavailable).
    pub poll_interval: Duration,
    /// How long to wait before retrying after the server could not be reached.
    pub retry_after: Duration,
}

impl SyncSource {
    /// A source for `dir` with the defaults: 500 ms debounce, file events, 2 s polling
    /// fallback, 5 s retry. The name is the directory's name made a label value.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let name = std::path::absolute(&dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .map(|n| label_value(&n))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "sync".to_owned());
        Self {
            dir,
            name,
            debounce: Duration::from_millis(500),
            poll: false,
            poll_interval: Duration::from_secs(2),
            retry_after: Duration::from_secs(5),
        }
    }
}

/// `s` made a valid label value.
pub fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned()
}

/// One set to apply: every resource of the directory, labelled, and the prune selector.
#[derive(Debug, Clone)]
pub struct SyncSet {
    /// The sync source's name.
    pub source: String,
    /// The resources as parsed (each with its file, for located errors), each labelled with
    /// [`SYNC_SOURCE_LABEL`].
    pub documents: Vec<ApplyDocument>,
    /// `berth.dev/sync-source=<name>`: what to prune when absent from `documents`.
    pub prune_selector: String,
    /// The Git commit of the directory, if it is a work tree.
    pub commit: Option<String>,
}

impl SyncSet {
    /// The resources as the store keeps them.
    pub fn objects(&self) -> Vec<DynamicObject> {
        self.documents.iter().map(ApplyDocument::object).collect()
    }
}

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The server refused the set (invalid, conflict, forbidden); retrying the same set will
    /// not help.
    #[error("{0}")]
    Refused(String),
    /// The server or store could not be reached; the same set is retried later.
    #[error("{0}")]
    Unavailable(String),
}

impl ApplyError {
    /// Whether a retry of the same set may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Where a sync set goes: the REST API ([`HttpApplier`]) or the store in-process
/// ([`StoreApplier`]).
pub trait Apply: Send + Sync {
    /// Applies the whole set and prunes what carries the source's label but is not in it.
    /// Answers one [`Change`] per resource (`container/web created`, `container/old pruned`).
    ///
    /// # Errors
    ///
    /// [`ApplyError`]; on error nothing must be left half-applied where the backend can
    /// avoid it (both backends validate the whole set before the first write).
    fn apply(&self, set: SyncSet) -> impl Future<Output = Result<Vec<Change>, ApplyError>> + Send;

    /// Records that the directory could not be applied (an audit event where possible).
    fn report_error(
        &self,
        source: &str,
        commit: Option<&str>,
        message: &str,
    ) -> impl Future<Output = ()> + Send;
}

pub use berth_api::service::sync::{SyncCounts, SyncProblem, SyncState, SyncStatus};

/// What an apply did to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The resource's kind (`Container`).
    pub kind: String,
    /// How the CLI names it (`container/web -n shop`).
    pub name: String,
    /// `created`, `configured`, `unchanged` or `pruned`.
    pub outcome: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.outcome)
    }
}

/// Per kind, what a list of changes did.
pub fn count_changes(changes: &[Change]) -> std::collections::BTreeMap<String, SyncCounts> {
    let mut counts = std::collections::BTreeMap::<String, SyncCounts>::new();
    for c in changes {
        let e = counts.entry(c.kind.clone()).or_default();
        match c.outcome.as_str() {
            "pruned" => e.pruned += 1,
            o => {
                e.applied += 1;
                match o {
                    "created" => e.created += 1,
                    "configured" => e.configured += 1,
                    _ => e.unchanged += 1,
                }
            }
        }
    }
    counts
}

/// The Git commit checked out in `dir`, if it is a work tree.
pub async fn git_head(dir: &Path) -> Option<String> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn fingerprint(inputs: &[Input]) -> String {
    let mut h = Sha256::new();
    for i in inputs {
        h.update(i.name.as_bytes());
        h.update([0]);
        h.update((i.bytes.len() as u64).to_le_bytes());
        h.update(&i.bytes);
    }
    format!("{:x}", h.finalize())
}

/// One reason a directory cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetProblem {
    /// `file:line:col: path: message`, or a sentence when the problem is not in a file.
    pub text: String,
    /// The file, line and column, when it is in a file.
    pub at: Option<(String, u64, u64)>,
}

/// Reads the directory into a labelled set, or the problems that keep it from applying.
///
/// # Errors
///
/// One [`SetProblem`] per problem.
pub fn read_set(source: &SyncSource) -> Result<(Vec<ApplyDocument>, String), Vec<SetProblem>> {
    let inputs = match read_inputs(std::slice::from_ref(&source.dir)) {
        Ok(i) => i,
        Err(crate::manifests::ReadError::Empty(_)) => Vec::new(),
        Err(e) => return Err(vec![SetProblem { text: e.to_string(), at: None }]),
    };
    let print = fingerprint(&inputs);
    let documents = parse_documents(&inputs).map_err(|ps: Vec<Problem>| {
        ps.iter()
            .map(|p| SetProblem {
                text: p.to_string(),
                at: Some((p.file.clone(), p.line, p.column)),
            })
            .collect::<Vec<_>>()
    })?;
    let documents = documents
        .into_iter()
        .map(|(file, mut parsed)| {
            parsed
                .resource
                .metadata_mut()
                .labels
                .insert(SYNC_SOURCE_LABEL.to_owned(), source.name.clone());
            ApplyDocument { file: Some(file), parsed }
        })
        .collect();
    Ok((documents, print))
}

/// Records a problem in the status: `state` becomes `error`, the applied state stays.
fn set_error(
    status: &watch::Sender<SyncStatus>,
    message: String,
    problems: &[SetProblem],
    commit: Option<String>,
) {
    let first = problems.iter().find_map(|p| p.at.clone());
    let problem = SyncProblem {
        message,
        file: first.as_ref().map(|f| f.0.clone()),
        line: first.as_ref().map(|f| f.1),
        column: first.as_ref().map(|f| f.2),
        problems: problems.iter().take(20).map(|p| p.text.clone()).collect(),
        at: Utc::now(),
        commit,
    };
    status.send_modify(|s| {
        s.state = SyncState::Error;
        s.last_error = Some(problem);
    });
}

/// What one pass over the directory did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The set is applied (or was already).
    Applied,
    /// The set is broken or was refused; nothing of it was applied.
    Broken,
    /// The server could not be reached; try again later.
    Retry,
}

/// Reads the directory and applies it once, unless it is the same as `last_good`.
pub async fn sync_once<A: Apply>(
    source: &SyncSource,
    applier: &A,
    status: &watch::Sender<SyncStatus>,
    last_good: &mut Option<String>,
) -> Outcome {
    let commit = git_head(&source.dir).await;
    status.send_modify(|s| s.last_attempt_at = Some(Utc::now()));
    let (documents, print) = match read_set(source) {
        Ok(x) => x,
        Err(problems) => {
            for p in &problems {
                tracing::warn!(source = %source.name, problem = %p.text, "sync: broken manifest");
            }
            let msg = format!(
                "{} problem(s), nothing applied; first: {}",
                problems.len(),
                problems.first().map_or("", |p| p.text.as_str())
            );
            tracing::error!(source = %source.name, commit = ?commit, "sync: {msg}");
            applier.report_error(&source.name, commit.as_deref(), &msg).await;
            set_error(status, msg, &problems, commit);
            return Outcome::Broken;
        }
    };
    if last_good.as_deref() == Some(print.as_str()) {
        // Nothing to apply; a new commit with the same manifests is in force as it stands.
        status.send_modify(|s| {
            s.state = SyncState::Ok;
            s.last_error = None;
            s.commit = commit;
        });
        return Outcome::Applied;
    }
    if documents.is_empty() {
        let msg = format!(
            "no manifests under {}; nothing applied (an empty set would prune every synced resource)",
            source.dir.display()
        );
        tracing::error!(source = %source.name, "sync: {msg}");
        applier.report_error(&source.name, commit.as_deref(), &msg).await;
        set_error(status, msg, &[], commit);
        return Outcome::Broken;
    }
    let n = documents.len();
    let set = SyncSet {
        source: source.name.clone(),
        documents,
        prune_selector: format!("{SYNC_SOURCE_LABEL}={}", source.name),
        commit: commit.clone(),
    };
    match applier.apply(set).await {
        Ok(changes) => {
            for c in &changes {
                tracing::info!(source = %source.name, "sync: {c}");
            }
            tracing::info!(source = %source.name, commit = ?commit, resources = n, "sync: applied");
            *last_good = Some(print);
            let counts = count_changes(&changes);
            status.send_modify(|s| {
                s.state = SyncState::Ok;
                s.last_applied_at = Some(Utc::now());
                s.commit = commit;
                s.resources = n;
                s.counts = counts;
                s.last_error = None;
            });
            Outcome::Applied
        }
        Err(e) => {
            tracing::error!(source = %source.name, error = %e, "sync: apply failed");
            let transient = e.is_transient();
            if !transient {
                applier.report_error(&source.name, commit.as_deref(), &e.to_string()).await;
            }
            let msg = format!("nothing applied: {e}");
            set_error(status, msg, &[], commit);
            if transient { Outcome::Retry } else { Outcome::Broken }
        }
    }
}

/// Whether a file event can change what the directory says: a change to a visible entry, or
/// to the Git `HEAD` or refs (a commit or checkout changes the commit the status reports).
fn relevant(event: &notify::Event, root: &Path) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|p| {
        let rel = p.strip_prefix(root).unwrap_or(p);
        let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned());
        match parts.next() {
            Some(first) if first == ".git" => {
                matches!(parts.next().as_deref(), Some("HEAD" | "refs" | "packed-refs"))
            }
            Some(first) => !first.starts_with('.') && !parts.any(|c: String| c.starts_with('.')),
            None => false,
        }
    })
}

/// Errors that stop the sync loop.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The directory does not exist or is not a directory.
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    /// Neither file events nor polling could be set up.
    #[error("cannot watch {path}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// What notify said.
        #[source]
        source: notify::Error,
    },
}

/// Keeps the server equal to `source.dir` until `shutdown` completes: applies it once at the
/// start, then after every change (debounced). Progress goes to `tracing` and to `status`.
///
/// # Errors
///
/// [`SyncError`] when the directory cannot be watched at all. Broken manifests and refused or
/// failed applies are reported and waited out, never returned.
pub async fn run_sync<A: Apply>(
    source: SyncSource,
    applier: A,
    status: watch::Sender<SyncStatus>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SyncError> {
    if !source.dir.is_dir() {
        return Err(SyncError::NotADirectory(source.dir.clone()));
    }
    let root = std::path::absolute(&source.dir).unwrap_or_else(|_| source.dir.clone());
    status.send_modify(|s| {
        s.directory = root.display().to_string();
        s.source = source.name.clone();
    });
    let (tx, mut rx) = mpsc::unbounded_channel::<notify::Event>();
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let _ = tx.send(ev);
        }
    };
    let _watcher: Box<dyn Watcher + Send> = {
        let native = if source.poll {
            None
        } else {
            match notify::recommended_watcher(handler.clone())
                .and_then(|mut w| w.watch(&root, notify::RecursiveMode::Recursive).map(|()| w))
            {
                Ok(w) => Some(Box::new(w) as Box<dyn Watcher + Send>),
                Err(e) => {
                    tracing::warn!(error = %e, "sync: file events unavailable; polling instead");
                    None
                }
            }
        };
        match native {
            Some(w) => w,
            None => {
                let config = notify::Config::default()
                    .with_poll_interval(source.poll_interval)
                    .with_compare_contents(true);
                let mut w = notify::PollWatcher::new(handler, config)
                    .map_err(|e| SyncError::Watch { path: root.clone(), source: e })?;
                w.watch(&root, notify::RecursiveMode::Recursive)
                    .map_err(|e| SyncError::Watch { path: root.clone(), source: e })?;
                Box::new(w)
            }
        }
    };
    tokio::pin!(shutdown);
    let mut last_good: Option<String> = None;
    let mut retry: Option<tokio::time::Instant> =
        match sync_once(&source, &applier, &status, &mut last_good).await {
            Outcome::Retry => Some(tokio::time::Instant::now() + source.retry_after),
            _ => None,
        };
    loop {
        // Wait for a relevant change, a retry, or shutdown.
        let far = tokio::time::Instant::now() + Duration::from_secs(24 * 3600);
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep_until(retry.unwrap_or(far)) => {}
            ev = rx.recv() => match ev {
                None => return Ok(()),
                Some(ev) if !relevant(&ev, &root) => continue,
                Some(_) => {
                    // Debounce: wait until the tree has been quiet for `debounce`.
                    loop {
                        tokio::select! {
                            () = &mut shutdown => return Ok(()),
                            () = tokio::time::sleep(source.debounce) => break,
                            more = rx.recv() => if more.is_none() { break },
                        }
                    }
                }
            },
        }
        retry = match sync_once(&source, &applier, &status, &mut last_good).await {
            Outcome::Retry => Some(tokio::time::Instant::now() + source.retry_after),
            _ => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Recorder {
        sets: Arc<Mutex<Vec<SyncSet>>>,
        errors: Arc<Mutex<Vec<String>>>,
    }

    impl Apply for Recorder {
        async fn apply(&self, set: SyncSet) -> Result<Vec<Change>, ApplyError> {
            let lines = set
                .objects()
                .iter()
                .map(|o| Change {
                    kind: o.kind.as_str().to_owned(),
                    name: o.metadata.name.clone(),
                    outcome: "created".into(),
                })
                .collect();
            self.sets.lock().unwrap().push(set);
            Ok(lines)
        }
        async fn report_error(&self, _source: &str, _commit: Option<&str>, message: &str) {
            self.errors.lock().unwrap().push(message.to_owned());
        }
    }

    const IMG: &str =
        "apiVersion: berth.dev/v1\nkind: Image\nmetadata:\n  name: NAME\nspec:\n  reference: x:1\n";

    #[tokio::test]
    async fn a_good_directory_is_applied_once_with_the_source_label_and_prune_selector() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), IMG.replace("NAME", "a")).unwrap();
        let mut source = SyncSource::new(dir.path());
        source.name = "repo".into();
        let r = Recorder::default();
        let (tx, _rx) = watch::channel(SyncStatus::default());
        let mut last = None;
        assert!(matches!(sync_once(&source, &r, &tx, &mut last).await, Outcome::Applied));
        // The same content again is not re-applied.
        assert!(matches!(sync_once(&source, &r, &tx, &mut last).await, Outcome::Applied));
        let sets = r.sets.lock().unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].prune_selector, "berth.dev/sync-source=repo");
        assert_eq!(sets[0].objects()[0].metadata.labels[SYNC_SOURCE_LABEL], "repo");
        assert_eq!(tx.borrow().resources, 1);
        assert_eq!(tx.borrow().state, SyncState::Ok);
        assert_eq!(tx.borrow().counts["Image"].created, 1);
    }

    #[tokio::test]
    async fn a_broken_file_applies_nothing_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), IMG.replace("NAME", "a")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), "kind: [").unwrap();
        let source = SyncSource::new(dir.path());
        let r = Recorder::default();
        let (tx, _rx) = watch::channel(SyncStatus::default());
        assert!(matches!(sync_once(&source, &r, &tx, &mut None).await, Outcome::Broken));
        assert!(r.sets.lock().unwrap().is_empty());
        assert_eq!(r.errors.lock().unwrap().len(), 1);
        let st = tx.borrow().clone();
        assert_eq!(st.state, SyncState::Error);
        let e = st.last_error.expect("the error is in the status");
        assert!(e.message.contains("b.yaml:"), "{e:?}");
        assert!(e.file.as_deref().is_some_and(|f| f.ends_with("b.yaml")), "{e:?}");
        assert_eq!(e.line, Some(1));
    }

    #[tokio::test]
    async fn an_empty_directory_is_refused_rather_than_pruning_everything() {
        let dir = tempfile::tempdir().unwrap();
        let source = SyncSource::new(dir.path());
        let r = Recorder::default();
        let (tx, _rx) = watch::channel(SyncStatus::default());
        assert!(matches!(sync_once(&source, &r, &tx, &mut None).await, Outcome::Broken));
        assert!(r.sets.lock().unwrap().is_empty());
    }

    #[test]
    fn git_ref_changes_are_relevant_but_other_hidden_files_are_not() {
        let root = Path::new("/repo");
        let ev = |p: &str| {
            notify::Event::new(notify::EventKind::Modify(notify::event::ModifyKind::Any))
                .add_path(root.join(p))
        };
        assert!(relevant(&ev("a.yaml"), root));
        assert!(relevant(&ev("sub/b.yaml"), root));
        assert!(relevant(&ev(".git/HEAD"), root));
        assert!(relevant(&ev(".git/refs/heads/main"), root));
        assert!(!relevant(&ev(".git/index"), root));
        assert!(!relevant(&ev(".git/objects/ab/cdef"), root));
        assert!(!relevant(&ev(".hidden.yaml"), root));
        assert!(!relevant(&ev("sub/.swp"), root));
    }

    #[test]
    fn changes_are_counted_per_kind() {
        let c = |kind: &str, outcome: &str| Change {
            kind: kind.into(),
            name: "x".into(),
            outcome: outcome.into(),
        };
        let counts = count_changes(&[
            c("Container", "created"),
            c("Container", "unchanged"),
            c("Container", "pruned"),
            c("Image", "configured"),
        ]);
        assert_eq!(
            counts["Container"],
            SyncCounts { applied: 2, created: 1, configured: 0, unchanged: 1, pruned: 1 }
        );
        assert_eq!(counts["Image"].configured, 1);
    }

    #[test]
    fn directory_names_become_label_values() {
        assert_eq!(label_value("My Repo!"), "My-Repo");
        assert_eq!(label_value("--x--"), "x");
    }
}
