//! The `Mutation` root: apply, delete, restart, user and API-token administration, and the
//! stdin / terminal size of exec sessions.
//!
//! Apply, delete and restart call the service layer ([`crate::service::resources`]), as REST
//! does, so validation, admin-only fields and audit are the same on both faces.
//!
//! Users, passwords and tokens are thin callers of [`crate::service::accounts`], as the REST
//! handlers are, so validation, last-admin protection, session ends and audit are the same on
//! both faces.

use async_graphql::{Context, Json, Object};
use base64::Engine as _;
use berth_schemas::ResourceKey;
use bytes::Bytes;
use serde_json::Value;

use super::error::{GqlResult, IntoGql, coded};
use super::exec::Input;
use super::policy::{Root, RootPolicy, principal};
use super::query::{docker, parse_kind, state};
use super::types::Resource;
use crate::policy::Role;
use crate::routes::auth::ClientAddr;
use crate::service::accounts;
use crate::service::resources::{self as service, ApplyQuery, ApplyRequest, Caller, DeleteParams};

/// The annotation `restartContainer` bumps; a change of it makes the controller replace the
/// container.
pub use crate::service::resources::RESTARTED_AT;

/// The mutation root.
#[derive(Debug, Default)]
pub struct Mutation;

fn parse_role(s: &str) -> GqlResult<Role> {
    serde_json::from_value(Value::String(s.to_ascii_lowercase())).map_err(|_| {
        coded("bad_request", format!("role must be admin, operator or viewer, not {s:?}"))
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> GqlResult<Json<Value>> {
    serde_json::to_value(v).map(Json).map_err(|_| coded("internal", "internal error"))
}

#[Object(guard = "RootPolicy(Root::Mutation)")]
impl Mutation {
    /// Applies one or more YAML (or JSON) documents, as `POST /api/v1/apply`:
    /// `{dryRun, results: [{kind, namespace, name, outcome, diff, ...}], pruned}`.
    async fn apply(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "multi-document YAML, or JSON")] manifest: String,
        #[graphql(default)] dry_run: bool,
        #[graphql(desc = "delete resources matching this selector that are not in the manifest")]
        prune: Option<String>,
    ) -> GqlResult<Json<Value>> {
        let caller = Caller::principal(principal(ctx)?);
        let state = state(ctx)?;
        let documents = service::parse_manifest(state, manifest.as_bytes()).gql()?;
        let req = ApplyRequest { documents, options: ApplyQuery { dry_run, prune } };
        to_json(&service::apply(state, &caller, req).await.gql()?)
    }

    /// Deletes a resource: `{outcome: deleted | terminating, object}` (the controller removes
    /// what it made in Docker first).
    async fn delete(
        &self,
        ctx: &Context<'_>,
        kind: String,
        #[graphql(default = "default")] namespace: String,
        name: String,
    ) -> GqlResult<Json<Value>> {
        let caller = Caller::principal(principal(ctx)?);
        let key = ResourceKey::new(parse_kind(&kind)?, namespace, name);
        let r =
            service::delete(state(ctx)?, &caller, &key, &DeleteParams::default()).await.gql()?;
        to_json(&r)
    }

    /// Restarts a container declaratively: bumps its `berth.dev/restartedAt` annotation, so
    /// the restart is audited and survives a restart of berth.
    async fn restart_container(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = "default")] namespace: String,
        name: String,
    ) -> GqlResult<Resource> {
        let caller = Caller::principal(principal(ctx)?);
        let key = ResourceKey::new(berth_schemas::Kind::Container, namespace, name);
        Ok(Resource(service::restart(state(ctx)?, &caller, &key).await.gql()?))
    }

    /// Creates a user (admin).
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
        #[graphql(desc = "admin, operator or viewer")] role: String,
    ) -> GqlResult<Json<Value>> {
        let role = parse_role(&role)?;
        let u = accounts::create_user(state(ctx)?, principal(ctx)?, username, password, role)
            .await
            .gql()?;
        to_json(&u)
    }

    /// Changes a user's role or disables them (admin). Their open websockets re-check at
    /// once: a disabled user's close, and so do those whose role was lowered.
    async fn update_user(
        &self,
        ctx: &Context<'_>,
        username: String,
        role: Option<String>,
        disabled: Option<bool>,
    ) -> GqlResult<Json<Value>> {
        let role = role.as_deref().map(parse_role).transpose()?;
        let patch = accounts::UserPatch { role, disabled };
        let u =
            accounts::update_user(state(ctx)?, principal(ctx)?, &username, patch).await.gql()?;
        to_json(&u)
    }

    /// Sets a user's password (admin); their sessions end. With `revokeTokens: true` their
    /// API tokens are revoked too (default false, as `PUT /api/v1/users/{u}/password`).
    async fn set_user_password(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
        #[graphql(default, desc = "also revoke the user's API tokens")] revoke_tokens: bool,
    ) -> GqlResult<bool> {
        accounts::reset_password(state(ctx)?, principal(ctx)?, &username, password, revoke_tokens)
            .await
            .gql()?;
        Ok(true)
    }

    /// Changes the caller's own password, given the current one, as `PUT
    /// /api/v1/me/password`: limited like login, refused for API tokens; every session of the
    /// caller ends (this one too).
    async fn change_own_password(
        &self,
        ctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> GqlResult<bool> {
        let p = principal(ctx)?;
        let addr = ctx.data_opt::<ClientAddr>().and_then(|a| a.0);
        accounts::change_own_password(state(ctx)?, p, addr, current_password, new_password)
            .await
            .gql()?;
        Ok(true)
    }

    /// Deletes a user (admin); the last admin cannot be deleted.
    async fn delete_user(&self, ctx: &Context<'_>, username: String) -> GqlResult<bool> {
        accounts::delete_user(state(ctx)?, principal(ctx)?, &username).await.gql()?;
        Ok(true)
    }

    /// Creates an API token for the caller: `{id, name, role, expires, token}`; the secret
    /// `token` is shown only here.
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        name: String,
        role: Option<String>,
        expires_in_days: Option<u32>,
    ) -> GqlResult<Json<Value>> {
        let role = role.as_deref().map(parse_role).transpose()?;
        let t =
            accounts::create_api_token(state(ctx)?, principal(ctx)?, &name, role, expires_in_days)
                .await
                .gql()?;
        to_json(&t)
    }

    /// Revokes an API token (one's own, or anyone's for an admin); websockets using it close.
    async fn revoke_api_token(&self, ctx: &Context<'_>, id: String) -> GqlResult<Json<Value>> {
        let t = accounts::revoke_api_token(state(ctx)?, principal(ctx)?, &id).await.gql()?;
        to_json(&t)
    }

    /// Sends bytes to the standard input of one's own exec session. `data` is text, or
    /// base64 with `base64: true`; with `eof: true` the process's standard input is closed
    /// after `data` (which may be empty), as at the end of a pipe, so that commands reading
    /// to the end (`cat`, `wc -c`) finish and report their exit code.
    async fn exec_input(
        &self,
        ctx: &Context<'_>,
        session_id: String,
        #[graphql(default)] data: String,
        #[graphql(default)] base64: bool,
        #[graphql(default, desc = "close the process's standard input after data")] eof: bool,
    ) -> GqlResult<bool> {
        let p = principal(ctx)?;
        let bytes = if base64 {
            base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .map_err(|e| coded("bad_request", format!("data is not base64: {e}")))?
        } else {
            data.into_bytes()
        };
        let s =
            state(ctx)?.graphql().exec.get(&session_id, &p.username).ok_or_else(|| {
                coded("not_found", format!("exec session {session_id:?} not found"))
            })?;
        let gone = |_| coded("gone", "the exec session has ended or its stdin is closed");
        if !bytes.is_empty() {
            s.input.send(Input::Data(Bytes::from(bytes))).await.map_err(gone)?;
        }
        if eof {
            s.input.send(Input::Eof).await.map_err(gone)?;
        }
        Ok(true)
    }

    /// Resizes the terminal of one's own exec session.
    async fn exec_resize(
        &self,
        ctx: &Context<'_>,
        session_id: String,
        cols: u16,
        rows: u16,
    ) -> GqlResult<bool> {
        let p = principal(ctx)?;
        if cols == 0 || rows == 0 {
            return Err(coded("bad_request", "cols and rows must be at least 1"));
        }
        let s =
            state(ctx)?.graphql().exec.get(&session_id, &p.username).ok_or_else(|| {
                coded("not_found", format!("exec session {session_id:?} not found"))
            })?;
        docker(ctx)?.exec_resize(&s.exec_id, cols, rows).await.gql()?;
        Ok(true)
    }

    /// Removes berth's own leftovers (admin), as `POST /api/v1/system/prune`: containers of
    /// deleted resources and image tags berth pulled that nothing names any more; never
    /// another owner's objects. With `dryRun`, only reports them.
    async fn system_prune(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] dry_run: bool,
    ) -> GqlResult<crate::service::system::PruneReport> {
        let p = principal(ctx)?;
        crate::service::system::prune(state(ctx)?, p, dry_run).await.gql()
    }
}
