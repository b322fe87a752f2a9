//! Why an exited container is exited: stopped (by `docker stop`, `docker kill`, berth itself)
//! or ended by its own process.
//!
//! The difference decides what a `desiredState: Running` resource gets: a container that was
//! *stopped* is drift, and berth starts it again; a container whose process *exited on its
//! own* is left to Docker's restart policy (crash restarts are Docker's job), and its status
//! says so (`Ready=False`, reason `Completed`, `Exited` or `OOMKilled`, with the exit code).
//!
//! # The rule
//!
//! For an exited container, the first that applies:
//!
//! 1. The Docker event stream showed a `kill` or `stop` for it since its last `start`
//!    ([`StopTracker`]): **stopped**. (`docker stop`, `docker kill` and `docker rm -f` all emit
//!    `kill` first; a process exiting by itself emits only `die`.)
//! 2. Its restart policy is `Always`: **stopped** — Docker restarts an `Always` container whose
//!    process exits (it is `restarting` meanwhile), so one that stays exited was stopped.
//! 3. berth's stored status names this container with `Ready` reason `Stopped`: berth stopped
//!    it for `desiredState: Stopped`; **stopped**.
//! 4. berth's stored status names this container with the same `finishedAt` and `Ready` reason
//!    `Completed`, `Exited` or `OOMKilled`: decided before (perhaps by a berth that has since
//!    restarted); **on its own**.
//! 5. It finished while berth was watching the event stream (after the current subscription
//!    began) and no `kill`/`stop` was seen: **on its own**.
//! 6. berth was not watching when it finished (berth or the Engine was down, the stream was
//!    reconnecting): by its state — killed by the OOM killer: **on its own**; exit code 137
//!    (SIGKILL) or 143 (SIGTERM), what `docker stop`/`docker kill` and an Engine shutdown
//!    leave: **stopped**; any other exit code: **on its own**.
//!
//! Rule 6 is a guess from what Docker keeps (`State.ExitCode`, `OOMKilled`, `FinishedAt`):
//! a process that exits by itself with 137/143 while berth is down is started once more, and
//! a container stopped gracefully (exit code 0) while berth is down is left exited.

use std::collections::HashSet;
use std::sync::Mutex;

use berth_schemas::condition::{READY, find_condition};
use berth_schemas::{ContainerStatus, RestartPolicyKind};
use chrono::{DateTime, Utc};

/// `Ready` reasons of a container whose process exited on its own.
pub const EXITED_REASONS: [&str; 3] = ["Completed", "Exited", "OOMKilled"];

/// What the Docker event stream told about stop requests, shared by the event feed (which
/// writes it) and the reconciles (which read it).
#[derive(Debug, Default)]
pub struct StopTracker {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Containers with a `kill` or `stop` event since their last `start`.
    stopped: HashSet<String>,
    /// When the current event subscription began; `None` while there is none.
    watching_since: Option<DateTime<Utc>>,
}

impl StopTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new event subscription begins at `at`: exits before it were not watched.
    pub fn watching_from(&self, at: DateTime<Utc>) {
        self.lock().watching_since = Some(at);
    }

    /// The event subscription ended: nothing is watched until the next one.
    pub fn not_watching(&self) {
        self.lock().watching_since = None;
    }

    /// Records a container event (`kill`, `stop`, `start`, `destroy`; others are ignored).
    pub fn on_event(&self, container_id: &str, action: &str) {
        let mut inner = self.lock();
        match action {
            "kill" | "stop" => {
                inner.stopped.insert(container_id.to_owned());
            }
            "start" | "destroy" => {
                inner.stopped.remove(container_id);
            }
            _ => {}
        }
    }

    /// Whether a `kill` or `stop` of the container was seen since its last `start`.
    pub fn stop_seen(&self, container_id: &str) -> bool {
        self.lock().stopped.contains(container_id)
    }

    /// When the current subscription began.
    pub fn watching_since(&self) -> Option<DateTime<Utc>> {
        self.lock().watching_since
    }
}

/// What is known of one exited container, for [`exited_on_its_own`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitFacts<'a> {
    /// The container id.
    pub id: &'a str,
    /// `State.ExitCode`.
    pub exit_code: Option<i64>,
    /// `State.OOMKilled`.
    pub oom_killed: bool,
    /// `State.FinishedAt`.
    pub finished_at: Option<DateTime<Utc>>,
    /// The spec's restart policy.
    pub restart_policy: RestartPolicyKind,
    /// A `kill`/`stop` event was seen since its last start.
    pub stop_seen: bool,
    /// When the current event subscription began (`None`: not watching).
    pub watching_since: Option<DateTime<Utc>>,
}

/// Whether an exited container's process ended on its own (`true`) rather than being stopped
/// (`false`), by the rule in the [module docs](self). `status` is the resource's stored status.
pub fn exited_on_its_own(facts: &ExitFacts<'_>, status: Option<&ContainerStatus>) -> bool {
    if facts.stop_seen || facts.restart_policy == RestartPolicyKind::Always {
        return false;
    }
    let same_container = status.filter(|s| s.container_id.as_deref() == Some(facts.id));
    if let Some(s) = same_container {
        let reason = find_condition(&s.conditions, READY).map(|c| c.reason.as_str());
        if reason == Some("Stopped") {
            return false;
        }
        if s.finished_at == facts.finished_at && reason.is_some_and(|r| EXITED_REASONS.contains(&r))
        {
            return true;
        }
    }
    if let (Some(since), Some(finished)) = (facts.watching_since, facts.finished_at)
        && finished >= since
    {
        return true;
    }
    facts.oom_killed || !matches!(facts.exit_code, Some(137 | 143))
}

#[cfg(test)]
mod tests {
    use berth_schemas::{Condition, ConditionStatus};

    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("a time")
    }

    fn facts(code: i64) -> ExitFacts<'static> {
        ExitFacts {
            id: "c1",
            exit_code: Some(code),
            oom_killed: false,
            finished_at: Some(t(10)),
            restart_policy: RestartPolicyKind::Never,
            stop_seen: false,
            watching_since: None,
        }
    }

    fn status(id: &str, reason: &str, finished: i64) -> ContainerStatus {
        ContainerStatus {
            container_id: Some(id.into()),
            finished_at: Some(t(finished)),
            conditions: vec![Condition {
                type_: READY.into(),
                status: ConditionStatus::False,
                reason: reason.into(),
                message: String::new(),
                last_transition_time: t(0),
                observed_generation: None,
            }],
            ..ContainerStatus::default()
        }
    }

    #[test]
    fn a_seen_kill_or_stop_means_stopped_whatever_the_exit_code() {
        for code in [0, 3, 137, 143] {
            let f = ExitFacts { stop_seen: true, watching_since: Some(t(0)), ..facts(code) };
            assert!(!exited_on_its_own(&f, None), "{code}");
        }
    }

    #[test]
    fn an_exit_while_watching_without_a_kill_is_the_process_exiting() {
        for code in [0, 3, 137, 143] {
            let f = ExitFacts { watching_since: Some(t(5)), ..facts(code) };
            assert!(exited_on_its_own(&f, None), "{code}");
        }
    }

    #[test]
    fn an_unwatched_exit_is_judged_by_its_exit_code_and_the_oom_flag() {
        assert!(exited_on_its_own(&facts(0), None));
        assert!(exited_on_its_own(&facts(3), None));
        assert!(!exited_on_its_own(&facts(137), None));
        assert!(!exited_on_its_own(&facts(143), None));
        assert!(exited_on_its_own(&ExitFacts { oom_killed: true, ..facts(137) }, None));
        // Watching began after it finished: not witnessed.
        let late = ExitFacts { watching_since: Some(t(20)), ..facts(143) };
        assert!(!exited_on_its_own(&late, None));
    }

    #[test]
    fn restart_policy_always_means_an_exited_container_was_stopped() {
        let f = ExitFacts {
            restart_policy: RestartPolicyKind::Always,
            watching_since: Some(t(0)),
            ..facts(3)
        };
        assert!(!exited_on_its_own(&f, None));
        let on_failure = ExitFacts { restart_policy: RestartPolicyKind::OnFailure, ..facts(0) };
        assert!(exited_on_its_own(&on_failure, None), "OnFailure does not restart exit 0");
    }

    #[test]
    fn a_stored_decision_about_the_same_run_stands_across_a_berth_restart() {
        // Exited on its own with 143 while berth watched; berth restarted since.
        let s = status("c1", "Exited", 10);
        assert!(exited_on_its_own(&facts(143), Some(&s)));
        // Another run of the container (another finishedAt) is judged afresh.
        let older = status("c1", "Exited", 2);
        assert!(!exited_on_its_own(&facts(143), Some(&older)));
        // Another container's status says nothing about this one.
        let other = status("c0", "Completed", 10);
        assert!(!exited_on_its_own(&facts(143), Some(&other)));
    }

    #[test]
    fn a_container_berth_stopped_for_desired_state_stopped_is_started_when_running_is_asked() {
        let s = status("c1", "Stopped", 10);
        assert!(!exited_on_its_own(&facts(0), Some(&s)));
    }

    #[test]
    fn the_tracker_forgets_a_stop_when_the_container_starts_again() {
        let tracker = StopTracker::default();
        tracker.on_event("c1", "kill");
        tracker.on_event("c1", "die");
        assert!(tracker.stop_seen("c1"));
        tracker.on_event("c1", "start");
        assert!(!tracker.stop_seen("c1"));
        tracker.on_event("c1", "stop");
        tracker.on_event("c1", "destroy");
        assert!(!tracker.stop_seen("c1"));
        assert_eq!(tracker.watching_since(), None);
        tracker.watching_from(t(1));
        assert_eq!(tracker.watching_since(), Some(t(1)));
        tracker.not_watching();
        assert_eq!(tracker.watching_since(), None);
    }
}
