//! Exec: who may run a command in which container ([`admit`]), its audit trail
//! ([`ExecAudit`]) and the live sessions.
//!
//! # Rules
//!
//! - The container is found by the one lookup of a resource's containers
//!   ([`berth_controller::docker::owned_by`]): only containers this server's instance made, so
//!   another berth instance's container on a shared Engine is `not_found`.
//! - Exec needs [`Action::Exec`] (the field's guard) and a stored `Container` resource. When its
//!   current spec uses admin-only fields ([`Resource::admin_only_fields`]: privileged, host
//!   network or PID, capabilities, devices, bind mounts) it also needs
//!   [`Action::UseAdminFields`]: a shell in such a container is root on the host. So does a
//!   container not made from the current spec (it is about to be replaced, and what the store
//!   says does not describe it).
//! - Every admitted exec is bracketed in the audit log by `exec.start` (outcome `pending`,
//!   written before the process starts: actor, resource, command, user, tty) and `exec.end`
//!   (naming the start in `intentSeq`: exit code and duration, or the failure); a refused one
//!   is `exec.start` with outcome `denied` and the reason. Standard input and output are never
//!   recorded.
//!
//! # Sessions
//!
//! The `exec` subscription registers one; `execInput` and `execResize` find it by id (only for
//! the user who started it), and ending the subscription removes it, which closes the
//! process's stdin and its attach connection. `execInput(..., eof: true)` closes the process's
//! stdin while its output keeps flowing, so `cat` or `wc -c` can finish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use berth_controller::docker::{Driver, ObservedContainer};
use berth_controller::labels;
use berth_controller::store::{AuditEntry, AuditOutcome, WriteContext};
use berth_schemas::{Kind, Resource, ResourceKey};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use super::error::{GqlResult, IntoGql, api, coded};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorChain};
use crate::policy::{Action, authorize};
use crate::state::AppState;

/// The audit verb of an exec's start (or its refusal).
pub const EXEC_START: &str = "exec.start";
/// The audit verb of an exec's end.
pub const EXEC_END: &str = "exec.end";

/// The longest command description an audit event keeps (longer ones are cut, marked so).
const MAX_AUDITED_COMMAND: usize = 1024;

/// What an exec asks for: what the audit log records of it.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The `Container` resource.
    pub key: ResourceKey,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The user to run as (`None`: the container's).
    pub user: Option<String>,
    /// Whether a terminal is allocated.
    pub tty: bool,
}

impl ExecRequest {
    /// `command ["sh","-c","id"], user root, tty false`, the command cut at
    /// [`MAX_AUDITED_COMMAND`] bytes.
    fn describe(&self) -> String {
        let mut command = serde_json::to_string(&self.command).unwrap_or_default();
        if command.len() > MAX_AUDITED_COMMAND {
            let mut cut = MAX_AUDITED_COMMAND;
            while !command.is_char_boundary(cut) {
                cut -= 1;
            }
            command.truncate(cut);
            command.push_str("...(cut)");
        }
        let user = match &self.user {
            Some(u) => serde_json::to_string(u).unwrap_or_default(),
            None => "(the container's)".to_owned(),
        };
        format!("command {command}, user {user}, tty {}", self.tty)
    }

    fn entry(&self, ctx: WriteContext, verb: &str, outcome: AuditOutcome) -> AuditEntry {
        AuditEntry::new(ctx, verb, outcome).target(
            Kind::Container.as_str(),
            Some(self.key.namespace.clone()),
            self.key.name.clone(),
        )
    }
}

/// The container `principal` may run `req` in, after the rules in the module docs; a refusal
/// is audited (`exec.start`, outcome `denied`).
///
/// # Errors
///
/// `not_found` when there is no such `Container` resource or this instance has no container
/// for it; `forbidden` (naming why) when the exec needs [`Action::UseAdminFields`] and the
/// caller's role lacks it; store and driver failures.
pub async fn admit(
    st: &AppState,
    principal: &Principal,
    driver: &dyn Driver,
    req: &ExecRequest,
) -> GqlResult<ObservedContainer> {
    let key = &req.key;
    let not_found = || coded("not_found", format!("no Docker container for {key}"));
    let stored = st.resources().get(key).await.gql()?.ok_or_else(not_found)?;
    let resource = Resource::from_dynamic(&stored).map_err(|e| api(ApiError::internal(e)))?;
    let Resource::Container(obj) = &resource else {
        return Err(not_found());
    };
    let containers = berth_controller::docker::owned_by(driver, st.resources().instance_id(), key)
        .await
        .gql()?;
    let current = containers.iter().find(|c| labels::is_made_from(&c.labels, &c.image_id, obj));
    let admin_fields: Vec<String> =
        resource.admin_only_fields().iter().map(ToString::to_string).collect();
    let (target, why_admin) = match current {
        Some(c) if admin_fields.is_empty() => (c, None),
        Some(c) => (
            c,
            Some(format!(
                "its spec uses admin-only field(s) {} (a shell in it is root on the host)",
                admin_fields.join(", ")
            )),
        ),
        None => match containers.first() {
            None => return Err(not_found()),
            Some(c) => (
                c,
                Some(
                    "its container was not made from the current spec (it is being replaced)"
                        .to_owned(),
                ),
            ),
        },
    };
    if let Some(why) = why_admin
        && let Err(e) = authorize(principal.role, Action::UseAdminFields)
    {
        let ApiError::Forbidden { details, .. } = e else { return Err(api(e)) };
        let message = format!(
            "exec into {key} needs {}: {why}; role {} may not",
            Action::UseAdminFields.as_str(),
            principal.role
        );
        let entry = req
            .entry(principal.ctx(), EXEC_START, AuditOutcome::Denied)
            .message(format!("{message}; {}", req.describe()));
        if let Err(e) = st.audit().append(entry).await {
            tracing::error!(error = %ErrorChain(&e), "cannot audit a refused exec");
        }
        let mut details = details;
        details["fields"] = json!(admin_fields);
        return Err(api(ApiError::Forbidden { message, details }));
    }
    Ok(target.clone())
}

/// The audit bracket of one admitted exec: [`ExecAudit::start`] writes `exec.start` (outcome
/// `pending`) before the process starts, [`ExecAudit::end`] writes `exec.end`. A session
/// dropped before its end was written (the client ended the subscription, the connection
/// went) writes it from a task owned by [`Sessions`], with the exit code if the process has
/// one by then.
#[derive(Debug)]
pub struct ExecAudit {
    st: AppState,
    ctx: WriteContext,
    req: ExecRequest,
    intent: u64,
    started: Instant,
    /// The Engine's exec, once it runs (to read its exit code when the session is dropped).
    running: Option<(Arc<dyn Driver>, String)>,
    ended: bool,
}

impl ExecAudit {
    /// Writes `exec.start` (pending) for `req` in `container`.
    ///
    /// # Errors
    ///
    /// The store's, when the event cannot be written: the exec must not run unaudited.
    pub async fn start(
        st: &AppState,
        principal: &Principal,
        req: &ExecRequest,
        container: &str,
    ) -> GqlResult<Self> {
        let short = container.get(..12).unwrap_or(container);
        let entry = req
            .entry(principal.ctx(), EXEC_START, AuditOutcome::Pending)
            .message(format!("{}, container {short}", req.describe()));
        let event = st.audit().append(entry).await.gql()?;
        Ok(Self {
            st: st.clone(),
            ctx: principal.ctx(),
            req: req.clone(),
            intent: event.seq,
            started: Instant::now(),
            running: None,
            ended: false,
        })
    }

    /// Remembers the Engine's exec, so that a dropped session can still report its exit code.
    pub fn running(&mut self, driver: Arc<dyn Driver>, exec_id: String) {
        self.running = Some((driver, exec_id));
    }

    /// Writes `exec.end`: `success` with the exit code (`None`: not known) or `failure` with
    /// the error. A failure to write is logged (the process has already run).
    pub async fn end(&mut self, result: Result<Option<i64>, String>) {
        if self.ended {
            return;
        }
        self.ended = true;
        let entry = end_entry(&self.req, self.ctx.clone(), self.intent, self.started, result);
        if let Err(e) = self.st.audit().append(entry).await {
            tracing::error!(error = %ErrorChain(&e), "cannot audit the end of an exec");
        }
    }
}

fn end_entry(
    req: &ExecRequest,
    ctx: WriteContext,
    intent: u64,
    started: Instant,
    result: Result<Option<i64>, String>,
) -> AuditEntry {
    let secs = started.elapsed().as_secs_f64();
    let (outcome, message) = match result {
        Ok(Some(code)) => (AuditOutcome::Success, format!("exit code {code} after {secs:.3} s")),
        Ok(None) => (
            AuditOutcome::Success,
            format!("the session ended after {secs:.3} s; exit code unknown (still running)"),
        ),
        Err(e) => (AuditOutcome::Failure, format!("failed after {secs:.3} s: {e}")),
    };
    req.entry(ctx, EXEC_END, outcome).message(message).intent(intent)
}

impl Drop for ExecAudit {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let st = self.st.clone();
        let (req, ctx, intent, started) =
            (self.req.clone(), self.ctx.clone(), self.intent, self.started);
        let running = self.running.take();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(intent, "an exec ended outside the runtime; its end is not audited");
            return;
        };
        st.graphql().exec.tasks.clone().spawn_on(
            async move {
                let code = match &running {
                    Some((driver, id)) => driver.exec_exit_code(id).await.ok().flatten(),
                    None => None,
                };
                let entry = end_entry(&req, ctx, intent, started, Ok(code));
                if let Err(e) = st.audit().append(entry).await {
                    tracing::error!(error = %ErrorChain(&e), "cannot audit the end of an exec");
                }
            },
            &runtime,
        );
    }
}

/// What `execInput` sends to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes for the process's standard input.
    Data(Bytes),
    /// End of input: the process's standard input is closed (shut down for writing).
    Eof,
}

/// What a mutation needs to reach a running session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// The user who started it.
    pub owner: String,
    /// The Engine's exec id (for resize).
    pub exec_id: String,
    /// Standard input.
    pub input: mpsc::Sender<Input>,
}

/// The sessions of this server, by session id, and the tasks that audit the end of sessions
/// dropped mid-way.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Arc<Mutex<HashMap<String, SessionHandle>>>,
    tasks: TaskTracker,
}

/// Removes its session when dropped (the subscription ended).
#[derive(Debug)]
pub struct Registration {
    map: Arc<Mutex<HashMap<String, SessionHandle>>>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

impl Sessions {
    /// Registers a session under `id`.
    pub fn register(&self, id: String, handle: SessionHandle) -> Registration {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), handle);
        Registration { map: Arc::clone(&self.map), id }
    }

    /// The session `id` if `user` started it (someone else's looks the same as none).
    pub fn get(&self, id: &str, user: &str) -> Option<SessionHandle> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .filter(|h| h.owner == user)
            .cloned()
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until the `exec.end` events of dropped sessions are written (at shutdown).
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_finds_a_session_and_it_goes_with_its_registration() {
        let s = Sessions::default();
        let (tx, _rx) = mpsc::channel(1);
        let h = SessionHandle { owner: "alice".into(), exec_id: "e1".into(), input: tx };
        let reg = s.register("s1".into(), h);
        assert!(s.get("s1", "alice").is_some());
        assert!(s.get("s1", "bob").is_none());
        drop(reg);
        assert!(s.get("s1", "alice").is_none());
        assert!(s.is_empty());
    }
}
