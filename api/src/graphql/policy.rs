//! Which [`Action`] every root field of the schema is, checked against the one REST policy
//! table ([`authorize`]) by [`RootPolicy`], the guard set on each root type.
//!
//! A root field missing from [`FIELD_POLICY`] is refused at run time (deny by default), and a
//! test walks the whole schema and fails when any root field lacks an entry.

use async_graphql::{Context, Guard};

use super::error::{api, coded};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::policy::{Action, authorize};
use crate::state::AppState;

/// The three root types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// `Query`.
    Query,
    /// `Mutation`.
    Mutation,
    /// `Subscription`.
    Subscription,
}

impl Root {
    /// The GraphQL type name.
    pub fn type_name(self) -> &'static str {
        match self {
            Root::Query => "Query",
            Root::Mutation => "Mutation",
            Root::Subscription => "Subscription",
        }
    }
}

/// Every root field and the action it is.
pub static FIELD_POLICY: &[(Root, &str, Action)] = &[
    (Root::Query, "me", Action::ReadSelf),
    (Root::Query, "resources", Action::ReadResources),
    (Root::Query, "resource", Action::ReadResources),
    (Root::Query, "users", Action::ManageUsers),
    (Root::Query, "apiTokens", Action::ManageOwnTokens),
    (Root::Query, "auditEvents", Action::ReadAudit),
    (Root::Query, "engine", Action::ReadSystem),
    (Root::Query, "dockerContainers", Action::ReadSystem),
    (Root::Query, "dockerImages", Action::ReadSystem),
    (Root::Query, "containers", Action::ReadResources),
    (Root::Query, "container", Action::ReadResources),
    (Root::Query, "images", Action::ReadResources),
    (Root::Query, "image", Action::ReadResources),
    (Root::Query, "auditVerify", Action::ReadAudit),
    (Root::Query, "syncStatus", Action::ReadResources),
    (Root::Query, "systemInfo", Action::ReadSystem),
    (Root::Query, "diskUsage", Action::ReadSystem),
    (Root::Mutation, "apply", Action::ApplyResources),
    (Root::Mutation, "delete", Action::DeleteResources),
    (Root::Mutation, "restartContainer", Action::RestartContainers),
    (Root::Mutation, "createUser", Action::ManageUsers),
    (Root::Mutation, "updateUser", Action::ManageUsers),
    (Root::Mutation, "setUserPassword", Action::ManageUsers),
    (Root::Mutation, "deleteUser", Action::ManageUsers),
    (Root::Mutation, "createApiToken", Action::ManageOwnTokens),
    (Root::Mutation, "revokeApiToken", Action::ManageOwnTokens),
    (Root::Mutation, "changeOwnPassword", Action::ReadSelf),
    (Root::Mutation, "execInput", Action::Exec),
    (Root::Mutation, "execResize", Action::Exec),
    (Root::Mutation, "systemPrune", Action::SystemPrune),
    (Root::Subscription, "resourceChanges", Action::ReadResources),
    (Root::Subscription, "dockerEvents", Action::ReadSystem),
    (Root::Subscription, "logs", Action::ReadLogs),
    (Root::Subscription, "stats", Action::ReadStats),
    (Root::Subscription, "exec", Action::Exec),
    (Root::Subscription, "applyProgress", Action::ReadResources),
];

/// The action of a root field, if it has a policy.
pub fn field_action(root: Root, field: &str) -> Option<Action> {
    FIELD_POLICY.iter().find(|(r, f, _)| *r == root && *f == field).map(|(_, _, a)| *a)
}

/// The caller of this request.
///
/// # Errors
///
/// `unauthenticated` when the request carries no principal.
pub fn principal<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Principal> {
    ctx.data_opt::<Principal>().ok_or_else(|| api(ApiError::Unauthenticated))
}

/// The guard on every root type: looks the field up in [`FIELD_POLICY`] and asks
/// [`authorize`] whether the caller's role may perform its action.
#[derive(Debug, Clone, Copy)]
pub struct RootPolicy(pub Root);

impl Guard for RootPolicy {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let field = ctx.item.node.name.node.as_str();
        let Some(action) = field_action(self.0, field) else {
            tracing::error!(root = self.0.type_name(), field, "field has no policy; refused");
            return Err(coded("forbidden", "this field has no authorization policy"));
        };
        let p = principal(ctx)?;
        if let Err(e) = authorize(p.role, action) {
            if let Some(state) = ctx.data_opt::<AppState>() {
                let route = format!("/graphql {}.{field}", self.0.type_name());
                crate::auth::audit_denied(state, p, &axum::http::Method::POST, &route, action)
                    .await;
            }
            return Err(api(e));
        }
        Ok(())
    }
}
