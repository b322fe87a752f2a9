//! The one authorization policy: which role may perform which [`Action`], and who may call a
//! route ([`Access`]).
//!
//! Every route's [`Access`] is written in the one route table ([`crate::app::routes`]), which
//! also builds the router and the OpenAPI document; finer checks inside handlers (admin-only
//! spec fields, someone else's token) and the GraphQL resolvers call [`authorize`] with the same
//! [`Action`]s, so there is exactly one table to read and to test.

use crate::error::ApiError;

pub use berth_controller::store::Role;

/// Every role, lowest first.
pub const ROLES: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

/// Everything a caller can ask berth to do, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read one's own account, change one's own password, log out.
    ReadSelf,
    /// Create, list and revoke one's own API tokens.
    ManageOwnTokens,
    /// Get, list and watch resources and their status.
    ReadResources,
    /// Read container logs.
    ReadLogs,
    /// Read container stats.
    ReadStats,
    /// Read Docker system information (engine info, version, disk usage, object lists).
    ReadSystem,
    /// Create or update resources.
    ApplyResources,
    /// Delete resources (including prune on apply).
    DeleteResources,
    /// Restart containers.
    RestartContainers,
    /// Run commands inside containers.
    Exec,
    /// Set spec fields that reach beyond the container (privileged, host mounts, ...).
    UseAdminFields,
    /// Create, change and delete users.
    ManageUsers,
    /// List and revoke other users' API tokens.
    ManageOthersTokens,
    /// Query and verify the audit log.
    ReadAudit,
    /// Remove unused Docker objects.
    SystemPrune,
    /// Download a backup of the whole store (it holds password and token hashes).
    Backup,
}

impl Action {
    /// Every action (for exhaustive tests).
    pub const ALL: [Action; 16] = [
        Action::ReadSelf,
        Action::ManageOwnTokens,
        Action::ReadResources,
        Action::ReadLogs,
        Action::ReadStats,
        Action::ReadSystem,
        Action::ApplyResources,
        Action::DeleteResources,
        Action::RestartContainers,
        Action::Exec,
        Action::UseAdminFields,
        Action::ManageUsers,
        Action::ManageOthersTokens,
        Action::ReadAudit,
        Action::SystemPrune,
        Action::Backup,
    ];

    /// The lowest role allowed to perform this action.
    pub fn min_role(self) -> Role {
        match self {
            Action::ReadSelf
            | Action::ManageOwnTokens
            | Action::ReadResources
            | Action::ReadLogs
            | Action::ReadStats
            | Action::ReadSystem => Role::Viewer,
            Action::ApplyResources
            | Action::DeleteResources
            | Action::RestartContainers
            | Action::Exec => Role::Operator,
            Action::UseAdminFields
            | Action::ManageUsers
            | Action::ManageOthersTokens
            | Action::ReadAudit
            | Action::SystemPrune
            | Action::Backup => Role::Admin,
        }
    }

    /// A stable name for audit events and error details (`apply_resources`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadSelf => "read_self",
            Action::ManageOwnTokens => "manage_own_tokens",
            Action::ReadResources => "read_resources",
            Action::ReadLogs => "read_logs",
            Action::ReadStats => "read_stats",
            Action::ReadSystem => "read_system",
            Action::ApplyResources => "apply_resources",
            Action::DeleteResources => "delete_resources",
            Action::RestartContainers => "restart_containers",
            Action::Exec => "exec",
            Action::UseAdminFields => "use_admin_fields",
            Action::ManageUsers => "manage_users",
            Action::ManageOthersTokens => "manage_others_tokens",
            Action::ReadAudit => "read_audit",
            Action::SystemPrune => "system_prune",
            Action::Backup => "backup",
        }
    }
}

/// Whether `role` may perform `action`.
///
/// # Errors
///
/// [`ApiError::Forbidden`] naming the action and the role it needs.
pub fn authorize(role: Role, action: Action) -> Result<(), ApiError> {
    let needed = action.min_role();
    if role >= needed {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            message: format!("role {role} may not {}; it needs {needed}", action.as_str()),
            details: serde_json::json!({ "action": action.as_str(), "role": role, "requiredRole": needed }),
        })
    }
}

/// Who may call a route: every entry of the route table ([`crate::app::routes`]) names one, and
/// the router mounts each handler behind the check its access asks for, so a handler cannot be
/// reached without an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials (health, metrics, login, refresh, the OpenAPI document).
    Public,
    /// An authenticated caller whose role allows the action.
    Authenticated(Action),
    /// `POST /graphql`: an authenticated caller of any role; each field then checks its own
    /// [`Action`] with [`authorize`] (a viewer may query, only an operator may apply).
    GraphqlFields,
    /// `GET /graphql/ws`: the upgrade itself carries no credentials (browsers cannot set headers
    /// on a websocket); the token comes in the `connection_init` message and the connection is
    /// closed (4401/4403) without it. The only route whose caller is authenticated after
    /// something was read, by design; each message is capped at the body limit.
    WebsocketInit,
}

impl Access {
    /// Whether the route answers 401 to a request without valid credentials before reading its
    /// body.
    pub fn needs_credentials(self) -> bool {
        matches!(self, Access::Authenticated(_) | Access::GraphqlFields)
    }

    /// The action a caller's role must allow before the handler runs, if any.
    pub fn action(self) -> Option<Action> {
        match self {
            Access::Authenticated(a) => Some(a),
            Access::Public | Access::GraphqlFields | Access::WebsocketInit => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_viewer_operator_admin() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
    }

    #[test]
    fn admin_may_do_everything() {
        for a in Action::ALL {
            assert!(authorize(Role::Admin, a).is_ok(), "{a:?}");
        }
    }

    #[test]
    fn viewer_may_read_but_not_write() {
        assert!(authorize(Role::Viewer, Action::ReadResources).is_ok());
        assert!(authorize(Role::Viewer, Action::ReadLogs).is_ok());
        assert!(authorize(Role::Viewer, Action::ApplyResources).is_err());
        assert!(authorize(Role::Viewer, Action::Exec).is_err());
    }

    #[test]
    fn operator_may_apply_and_exec_but_not_manage_users_or_prune() {
        for a in [
            Action::ApplyResources,
            Action::DeleteResources,
            Action::RestartContainers,
            Action::Exec,
        ] {
            assert!(authorize(Role::Operator, a).is_ok(), "{a:?}");
        }
        for a in [
            Action::ManageUsers,
            Action::ReadAudit,
            Action::SystemPrune,
            Action::UseAdminFields,
            Action::Backup,
        ] {
            assert!(authorize(Role::Operator, a).is_err(), "{a:?}");
        }
    }
}
