//! The one authorization policy: which role may perform which [`Action`], and which action every
//! REST route is.
//!
//! REST routes are checked by middleware through [`ROUTE_POLICY`]; finer checks inside handlers
//! (admin-only spec fields, someone else's token) and the GraphQL resolvers call [`authorize`]
//! with the same [`Action`]s, so there is exactly one table to read and to test.

use axum::http::Method;

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

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials (health, metrics, login, refresh, the OpenAPI document).
    Public,
    /// An authenticated caller whose role allows the action.
    Authenticated(Action),
}

/// One entry of the route table.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    /// The HTTP method.
    pub method: Method,
    /// The route as registered in the router (`/api/v1/{plural}/{namespace}/{name}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

const fn entry(method: Method, path: &'static str, access: Access) -> RoutePolicy {
    RoutePolicy { method, path, access }
}

use Access::{Authenticated as Auth, Public};

/// Every REST route and who may call it. The authorization middleware refuses a route that is
/// missing here, and a test checks that every registered route has an entry.
pub static ROUTE_POLICY: &[RoutePolicy] = &[
    entry(Method::GET, "/healthz", Public),
    entry(Method::GET, "/readyz", Public),
    entry(Method::GET, "/metrics", Public),
    entry(Method::GET, "/api/v1/openapi.json", Public),
    entry(Method::POST, "/api/v1/auth/login", Public),
    entry(Method::POST, "/api/v1/auth/refresh", Public),
    entry(Method::POST, "/api/v1/auth/logout", Auth(Action::ReadSelf)),
    entry(Method::GET, "/api/v1/me", Auth(Action::ReadSelf)),
    entry(Method::PUT, "/api/v1/me/password", Auth(Action::ReadSelf)),
    entry(Method::GET, "/api/v1/users", Auth(Action::ManageUsers)),
    entry(Method::POST, "/api/v1/users", Auth(Action::ManageUsers)),
    entry(Method::GET, "/api/v1/users/{username}", Auth(Action::ManageUsers)),
    entry(Method::PATCH, "/api/v1/users/{username}", Auth(Action::ManageUsers)),
    entry(Method::DELETE, "/api/v1/users/{username}", Auth(Action::ManageUsers)),
    entry(Method::PUT, "/api/v1/users/{username}/password", Auth(Action::ManageUsers)),
    entry(Method::GET, "/api/v1/tokens", Auth(Action::ManageOwnTokens)),
    entry(Method::POST, "/api/v1/tokens", Auth(Action::ManageOwnTokens)),
    entry(Method::DELETE, "/api/v1/tokens/{id}", Auth(Action::ManageOwnTokens)),
    entry(Method::POST, "/api/v1/apply", Auth(Action::ApplyResources)),
    entry(Method::GET, "/api/v1/system/version", Auth(Action::ReadSystem)),
    entry(Method::GET, "/api/v1/system/containers", Auth(Action::ReadSystem)),
    entry(Method::GET, "/api/v1/system/images", Auth(Action::ReadSystem)),
    entry(Method::GET, "/api/v1/system/info", Auth(Action::ReadSystem)),
    entry(Method::GET, "/api/v1/system/df", Auth(Action::ReadSystem)),
    entry(Method::POST, "/api/v1/system/prune", Auth(Action::SystemPrune)),
    entry(Method::GET, "/api/v1/sync", Auth(Action::ReadResources)),
    entry(Method::GET, "/api/v1/system/backup", Auth(Action::Backup)),
    entry(Method::GET, "/api/v1/{plural}", Auth(Action::ReadResources)),
    entry(Method::GET, "/api/v1/{plural}/{namespace}/{name}", Auth(Action::ReadResources)),
    entry(Method::DELETE, "/api/v1/{plural}/{namespace}/{name}", Auth(Action::DeleteResources)),
    entry(Method::PUT, "/api/v1/{plural}/{namespace}/{name}", Auth(Action::ApplyResources)),
    entry(Method::GET, "/api/v1/{plural}/{namespace}/{name}/status", Auth(Action::ReadResources)),
    entry(Method::GET, "/api/v1/audit", Auth(Action::ReadAudit)),
    entry(Method::GET, "/api/v1/audit/verify", Auth(Action::ReadAudit)),
];

/// The policy entry for a matched route, if any.
pub fn route_policy(method: &Method, path: &str) -> Option<&'static RoutePolicy> {
    ROUTE_POLICY.iter().find(|p| p.method == *method && p.path == path)
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

    #[test]
    fn route_table_has_no_duplicate_entries() {
        for (i, a) in ROUTE_POLICY.iter().enumerate() {
            for b in &ROUTE_POLICY[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{} {}", a.method, a.path);
            }
        }
    }
}
