//! The audit trail of the controller's Docker actions, and what happens to it across a crash.
//!
//! Every mutating Docker call is bracketed by two audit events (actor and source `controller`):
//!
//! 1. the **intent**, outcome `pending`, written durably *before* the call
//!    ([`super::intend`]): verb (`docker.container.create`, ...), target resource, and what is
//!    about to be done (`create container berth_default_web`);
//! 2. the **outcome**, `success` or `failure` (with the error), written after the call
//!    ([`super::settle`]), with `intentSeq` set to the intent's `seq`.
//!
//! A `kill -9` between the two leaves an intent without an outcome. On the next start,
//! [`settle_interrupted`] finds every such intent written before the start and appends its
//! outcome `unknown`, with a message starting `unknown-after-restart:` that says what Docker
//! shows now for the resource (its containers and their states, or whether the image is on
//! the host). berth cannot know whether the interrupted call took effect — the observation is
//! the evidence — and the reconcile that follows converges from whatever is there.
//!
//! A pass that does nothing writes no event at all.

use std::collections::{BTreeMap, HashSet};

use berth_schemas::{Kind, ResourceKey};
use tracing::{info, warn};

use super::{Context, Error, driver_err, store_err};
use crate::store::{Actor, AuditEntry, AuditEvent, AuditOutcome, AuditQuery, WriteContext};

/// The prefix of the message of an outcome written for an interrupted intent.
pub const UNKNOWN_AFTER_RESTART: &str = "unknown-after-restart";

/// The `seq` of the newest audit event, `None` for an empty log: intents up to it belong to
/// earlier runs of the controller.
///
/// # Errors
///
/// Store failures.
pub async fn audit_head(ctx: &Context) -> Result<Option<u64>, Error> {
    let page = ctx
        .store
        .query(&AuditQuery { newest_first: true, limit: 1, ..AuditQuery::default() })
        .await
        .map_err(store_err("audit query"))?;
    Ok(page.events.first().map(|e| e.seq))
}

/// The controller's intents up to `head` that have no outcome, oldest first.
///
/// Reads every controller event up to `head`, newest first (one pass over the log, at start).
///
/// # Errors
///
/// Store failures.
pub async fn interrupted(ctx: &Context, head: u64) -> Result<Vec<AuditEvent>, Error> {
    let mut pending: BTreeMap<u64, AuditEvent> = BTreeMap::new();
    let mut settled: HashSet<u64> = HashSet::new();
    // Newest first from `head`: an outcome always comes after its intent, so it is seen first.
    let mut cursor = Some(head.saturating_add(1));
    loop {
        let query = AuditQuery {
            actor: Some(Actor::Controller),
            cursor,
            newest_first: true,
            limit: 1000,
            ..AuditQuery::default()
        };
        let page = ctx.store.query(&query).await.map_err(store_err("audit query"))?;
        for event in page.events {
            if let Some(seq) = event.intent_seq {
                settled.insert(seq);
            } else if event.outcome == AuditOutcome::Pending && !settled.remove(&event.seq) {
                pending.insert(event.seq, event);
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(pending.into_values().collect())
}

/// What Docker shows now for the target of an interrupted intent.
async fn observe_now(ctx: &Context, event: &AuditEvent) -> Result<String, Error> {
    let (Some(kind), Some(name)) = (event.kind.as_deref(), event.name.as_deref()) else {
        return Ok("no target recorded".to_owned());
    };
    let Ok(kind) = kind.parse::<Kind>() else {
        return Ok(format!("unknown kind {kind}"));
    };
    let key = ResourceKey::new(kind, event.namespace.clone().unwrap_or_default(), name);
    let image_ref = if event.verb.starts_with("docker.image.") {
        let stored = ctx.store.get(&key).await.map_err(store_err("get resource"))?;
        stored.and_then(|o| {
            let field = if kind == Kind::Image { "reference" } else { "image" };
            o.spec.get(field).and_then(|v| v.as_str()).map(str::to_owned)
        })
    } else {
        None
    };
    if let Some(reference) = image_ref {
        let image = ctx
            .driver
            .inspect_image(&reference)
            .await
            .map_err(driver_err(format!("inspect image {reference}")))?;
        return Ok(match image {
            Some(i) => format!("image {reference} is on the host ({})", i.id),
            None => format!("image {reference} is not on the host"),
        });
    }
    if kind != Kind::Container {
        return Ok("nothing to observe".to_owned());
    }
    let containers = crate::docker::owned_by(ctx.driver.as_ref(), &ctx.instance, &key)
        .await
        .map_err(driver_err("list containers"))?;
    if containers.is_empty() {
        return Ok(format!("no container of {key} exists"));
    }
    let list: Vec<String> = containers
        .iter()
        .map(|c| format!("{} {} {}", c.name, c.id.get(..12).unwrap_or(&c.id), c.state))
        .collect();
    Ok(format!("container(s) of {key}: {}", list.join(", ")))
}

/// Appends outcome `unknown` (message `unknown-after-restart: ...`, with what Docker shows now)
/// for every controller intent up to `head` that has no outcome. Returns how many it settled.
///
/// # Errors
///
/// Store and driver failures; what was settled before the failure stays settled, and a
/// second call settles the rest.
pub async fn settle_interrupted(ctx: &Context, head: u64) -> Result<usize, Error> {
    let open = interrupted(ctx, head).await?;
    for event in &open {
        let observed = observe_now(ctx, event).await?;
        let message = format!(
            "{UNKNOWN_AFTER_RESTART}: berth was stopped before it saw the result of \"{}\" \
             (intent {}); observed now: {observed}",
            event.message.as_deref().unwrap_or(&event.verb),
            event.seq
        );
        warn!(seq = event.seq, verb = %event.verb, %message, "settling an interrupted Docker action");
        let mut entry =
            AuditEntry::new(WriteContext::controller(), &event.verb, AuditOutcome::Unknown)
                .message(message)
                .intent(event.seq);
        entry.kind = event.kind.clone();
        entry.namespace = event.namespace.clone();
        entry.name = event.name.clone();
        ctx.store.append(entry).await.map_err(store_err("audit append"))?;
    }
    if !open.is_empty() {
        info!(count = open.len(), "settled the Docker actions a previous run left unfinished");
    }
    Ok(open.len())
}
