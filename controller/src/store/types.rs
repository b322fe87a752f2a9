//! The vocabulary of store calls: who writes ([`WriteContext`]), what a write did
//! ([`WriteResult`]) and what a list asks for ([`ListQuery`]).

use std::fmt;
use std::str::FromStr;

use berth_schemas::selector::Selector;
use berth_schemas::{DynamicObject, Kind};
use serde::{Deserialize, Serialize};

/// Who made a write. Recorded in every audit event.
///
/// Serialized as a string: `user:alice`, `token:<token id>`, `controller`, `sync`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(into = "String", try_from = "String")]
pub enum Actor {
    /// A person, by user name.
    User(String),
    /// An API token, by its id (never the token itself).
    ApiToken(String),
    /// berth's own reconciler.
    Controller,
    /// The GitOps directory sync.
    Sync,
    /// Nobody identified yet (for example a failed login with an unknown user name).
    Anonymous,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(name) => write!(f, "user:{name}"),
            Actor::ApiToken(id) => write!(f, "token:{id}"),
            Actor::Controller => f.write_str("controller"),
            Actor::Sync => f.write_str("sync"),
            Actor::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// A string that is not an [`Actor`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid actor {0:?} (expected user:NAME, token:ID, controller, sync or anonymous)")]
pub struct InvalidActor(pub String);

impl FromStr for Actor {
    type Err = InvalidActor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "controller" => Ok(Actor::Controller),
            "sync" => Ok(Actor::Sync),
            "anonymous" => Ok(Actor::Anonymous),
            _ => match s.split_once(':') {
                Some(("user", name)) if !name.is_empty() => Ok(Actor::User(name.to_owned())),
                Some(("token", id)) if !id.is_empty() => Ok(Actor::ApiToken(id.to_owned())),
                _ => Err(InvalidActor(s.to_owned())),
            },
        }
    }
}

impl From<Actor> for String {
    fn from(a: Actor) -> String {
        a.to_string()
    }
}

impl TryFrom<String> for Actor {
    type Error = InvalidActor;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Which door a write came through. Recorded in every audit event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The REST API.
    Rest,
    /// The GraphQL API.
    Graphql,
    /// The CLI acting on the data directory directly (backup, restore, bootstrap).
    Cli,
    /// The GitOps directory sync.
    Sync,
    /// The reconciler.
    Controller,
}

impl Source {
    /// The lower-case name used in the audit log (`rest`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Rest => "rest",
            Source::Graphql => "graphql",
            Source::Cli => "cli",
            Source::Sync => "sync",
            Source::Controller => "controller",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is writing and through which door; every write carries one and its audit event
/// records it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WriteContext {
    /// Who.
    pub actor: Actor,
    /// Through which door.
    pub source: Source,
}

impl WriteContext {
    /// A context from its parts.
    pub fn new(actor: Actor, source: Source) -> Self {
        Self { actor, source }
    }

    /// The reconciler's context: actor `controller`, source `controller`.
    pub fn controller() -> Self {
        Self::new(Actor::Controller, Source::Controller)
    }

    /// A person acting through the REST API.
    pub fn rest_user(name: impl Into<String>) -> Self {
        Self::new(Actor::User(name.into()), Source::Rest)
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WriteOutcome {
    /// The object did not exist and now does.
    Created,
    /// The object changed (spec, labels, annotations, status or finalizers).
    Configured,
    /// Nothing changed; nothing was written, no revision was used and no audit event or watch
    /// event was emitted.
    Unchanged,
    /// Deletion was requested and the object waits for its finalizers (`deletionTimestamp` is
    /// set).
    Terminating,
    /// The object is gone.
    Deleted,
}

impl WriteOutcome {
    /// The word kubectl prints for it (`created`, `configured`, `unchanged`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOutcome::Created => "created",
            WriteOutcome::Configured => "configured",
            WriteOutcome::Unchanged => "unchanged",
            WriteOutcome::Terminating => "terminating",
            WriteOutcome::Deleted => "deleted",
        }
    }
}

impl fmt::Display for WriteOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of a resource write: what happened, the object before and after (so the API
/// can show a diff).
#[derive(Debug, Clone, PartialEq)]
pub struct WriteResult {
    /// What the write did.
    pub outcome: WriteOutcome,
    /// The stored object before the write (`None` when it did not exist).
    pub old: Option<DynamicObject>,
    /// The object after the write. For [`WriteOutcome::Deleted`] this is the last state, with
    /// the `resourceVersion` of the deletion.
    pub object: DynamicObject,
    /// The store revision after the write (unchanged writes report the current one).
    pub revision: u64,
}

/// What to list. The default lists everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    /// One kind, or all kinds.
    pub kind: Option<Kind>,
    /// One namespace, or all namespaces.
    pub namespace: Option<String>,
    /// Only objects whose labels match.
    pub selector: Selector,
}

impl ListQuery {
    /// Everything of one kind in all namespaces.
    pub fn kind(kind: Kind) -> Self {
        Self { kind: Some(kind), ..Self::default() }
    }

    /// Narrows to one namespace.
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Narrows to objects whose labels match `selector`.
    pub fn with_selector(mut self, selector: Selector) -> Self {
        self.selector = selector;
        self
    }

    /// Whether `object` is selected by this query.
    pub fn matches(&self, object: &DynamicObject) -> bool {
        self.kind.is_none_or(|k| k == object.kind)
            && self.namespace.as_deref().is_none_or(|ns| ns == object.metadata.namespace)
            && self.selector.matches(&object.metadata.labels)
    }
}

/// A consistent list: the items as of `revision`. Watch from `revision` to see every change
/// after it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectList {
    /// The store revision the items reflect.
    pub revision: u64,
    /// The selected objects, ordered by kind, namespace and name.
    pub items: Vec<DynamicObject>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_round_trip_through_their_string_form() {
        for a in [
            Actor::User("alice".into()),
            Actor::ApiToken("tok-1".into()),
            Actor::Controller,
            Actor::Sync,
            Actor::Anonymous,
        ] {
            assert_eq!(a.to_string().parse::<Actor>(), Ok(a));
        }
        assert!("user:".parse::<Actor>().is_err());
        assert!("robot".parse::<Actor>().is_err());
    }
}
