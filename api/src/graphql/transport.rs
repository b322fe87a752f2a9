//! The transports: `POST /graphql` (Bearer token, batches capped) and the websocket at
//! `/graphql/ws` (graphql-transport-ws, and the older graphql-ws subprotocol).
//!
//! Websocket rules: the `Origin` header, when a browser sends one, must be the server's own
//! origin, a loopback origin or one in [`GraphqlConfig::allowed_origins`](super::GraphqlConfig)
//! (403 otherwise, before the upgrade). The token travels in the `connection_init` payload as
//! `{"authorization": "Bearer <token>"}` (key matched case-insensitively), never in the URL;
//! a missing or bad token closes the socket with 4401, a valid credential whose account may
//! not connect (disabled user) with 4403. The server pings every
//! [`keepalive_interval`](super::GraphqlConfig::keepalive_interval) and closes with 4401 when
//! the token expires.
//!
//! A connection keeps no authority its credential has lost: on every account change of its
//! user published by [`crate::service::accounts`] (token revoked, user disabled or deleted,
//! role changed, password changed or reset, session ended), and every
//! [`credential_recheck_interval`](super::GraphqlConfig::credential_recheck_interval) as a
//! backstop, it authenticates its token again and closes with 4401 (credential no longer
//! valid), 4403 (account disabled, or role lowered: reconnect to carry on with the new role;
//! every subscription of the connection ends). Every `subscribe` (operation) takes a token from
//! the caller's per-session / per-token rate limiter, as an HTTP request does; a refused one
//! gets an `error` message with code `rate_limited` and `retryAfter` seconds.

use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::http::{MultipartOptions, receive_batch_body};
use async_graphql::http::{WebSocket as GqlWebSocket, WebSocketProtocols, WsMessage};
use async_graphql::{BatchRequest, Data};
use async_graphql_axum::GraphQLResponse;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_controller::store::token_hash;
use chrono::{DateTime, Utc};
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde_json::{Value, json};

use super::schema::BerthSchema;
use crate::auth::{self, API_TOKEN_PREFIX, Principal};
use crate::error::ApiError;
use crate::extract::ApiBytes;
use crate::routes::auth::ClientAddr;
use crate::state::AppState;

/// Close code: no or bad credentials in `connection_init`, or the token expired.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;
/// Close code: valid credentials whose account may not connect.
pub const CLOSE_FORBIDDEN: u16 = 4403;
/// Close code: no `connection_init` in time.
pub const CLOSE_INIT_TIMEOUT: u16 = 4408;

/// Rate-limit refusals waiting to be written to one websocket; beyond this a refused
/// operation is still refused, but without a message.
const REFUSALS_QUEUED: usize = 64;

/// Messages written to one websocket before a flush, at most: the ones already ready are
/// written together (one flush, fewer syscalls), and this bounds what one flush holds.
const WRITE_BATCH: usize = 64;

fn error_body(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, axum::Json(body)).into_response()
}

/// An [`ApiError`] in the GraphQL error shape (`{"errors": [{message, extensions: {code}}]}`),
/// with the status code REST would use.
pub fn error_response(e: &ApiError) -> Response {
    let mut r = error_body(e.status(), e.code(), &e.to_string());
    if let ApiError::RateLimited { retry_after } = e {
        r.headers_mut().insert(header::RETRY_AFTER, retry_after.as_secs().max(1).into());
    }
    r
}

/// `POST /graphql`. The route's guard has already authenticated the caller (401 before the body
/// is read) and limited the body; the batch is read within that limit (413 past it).
pub async fn graphql_post(
    State(state): State<AppState>,
    Extension(schema): Extension<BerthSchema>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<ApiBytes, ApiError>,
) -> Response {
    let body = match body {
        Ok(ApiBytes(b)) => b,
        Err(e) => return error_response(&e),
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let batch = match receive_batch_body(content_type, &body[..], MultipartOptions::default()).await
    {
        Ok(b) => b,
        Err(e) => return error_body(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    };
    let cfg = &state.config().graphql;
    if let BatchRequest::Batch(v) = &batch
        && v.len() > cfg.max_batch
    {
        let m = format!("a batch may hold at most {} operations, not {}", cfg.max_batch, v.len());
        return error_body(StatusCode::BAD_REQUEST, "batch_limit", &m);
    }
    let batch = batch.data(principal);
    match tokio::time::timeout(cfg.query_timeout, schema.execute_batch(batch)).await {
        Ok(resp) => GraphQLResponse::from(resp).into_response(),
        Err(_) => {
            error_body(StatusCode::SERVICE_UNAVAILABLE, "timeout", "the request took too long")
        }
    }
}

/// Whether a browser page from `origin` may open the websocket.
pub fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    if host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) {
        return true; // same origin
    }
    let hostname = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    hostname.eq_ignore_ascii_case("localhost")
        || hostname.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `GET /graphql/ws`: checks the `Origin` and the subprotocol, then upgrades. Credentials come
/// in `connection_init` (see the module docs); every message and frame is capped at the body
/// limit, so an unauthenticated client cannot make the server hold more than that.
pub async fn graphql_ws(
    State(state): State<AppState>,
    Extension(schema): Extension<BerthSchema>,
    headers: HeaderMap,
    addr: ClientAddr,
    upgrade: WebSocketUpgrade,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if !origin_allowed(origin, host, &state.config().graphql.allowed_origins) {
            tracing::info!(origin, "websocket from a foreign origin refused");
            return error_body(StatusCode::FORBIDDEN, "origin_not_allowed", "origin not allowed");
        }
    }
    let protocol = headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|p| p.trim().parse::<WebSocketProtocols>().ok()));
    let Some(protocol) = protocol else {
        return error_body(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "ask for the graphql-transport-ws (or graphql-ws) subprotocol",
        );
    };
    let limit = state.config().body_limit;
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .protocols([protocol.sec_websocket_protocol()])
        .on_upgrade(move |socket| serve_socket(socket, state, schema, protocol, addr))
}

/// What `connection_init` decided, for the connection loop.
#[derive(Debug, Default)]
struct InitOutcome {
    refused: Option<(u16, String)>,
    expires: Option<DateTime<Utc>>,
    /// The accepted credential: re-checked on account changes.
    accepted: Option<Accepted>,
}

/// The credential a connection was accepted with.
#[derive(Clone)]
struct Accepted {
    token: String,
    principal: Principal,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted").field("principal", &self.principal).finish_non_exhaustive()
    }
}

fn token_from_payload(payload: &Value) -> Option<String> {
    let obj = payload.as_object()?;
    let v = obj
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .or_else(|| {
            obj.iter().find(|(k, _)| k.eq_ignore_ascii_case("headers")).and_then(|(_, h)| {
                h.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            })
        })?
        .1
        .as_str()?
        .trim();
    let token = match v.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        Some(_) => return None,
        None => v,
    };
    (!token.is_empty()).then(|| token.to_owned())
}

/// When the credential stops being valid, and whether a refused credential is valid but its
/// account may not connect (4403) rather than bad (4401).
async fn credential_facts(state: &AppState, token: &str) -> (Option<DateTime<Utc>>, bool) {
    let (owner, expires) = if token.starts_with(API_TOKEN_PREFIX) {
        match state.accounts().find_api_token(&token_hash(token)).await {
            Ok(Some(t)) if t.is_active(Utc::now()) => (Some(t.owner), t.expires),
            _ => (None, None),
        }
    } else {
        match state.keys().verify(token) {
            Ok(c) => {
                let exp = i64::try_from(c.exp).ok().and_then(|s| DateTime::from_timestamp(s, 0));
                (Some(c.sub), exp)
            }
            Err(_) => (None, None),
        }
    };
    let disabled = match &owner {
        Some(u) => matches!(state.accounts().get_user(u).await, Ok(Some(u)) if u.disabled),
        None => false,
    };
    (expires, disabled)
}

async fn connection_init(
    state: AppState,
    outcome: Arc<Mutex<InitOutcome>>,
    addr: ClientAddr,
    payload: Value,
) -> async_graphql::Result<Data> {
    let refuse = |code: u16, message: &str| {
        outcome.lock().unwrap_or_else(PoisonError::into_inner).refused =
            Some((code, message.to_owned()));
        async_graphql::Error::new(message)
    };
    let Some(token) = token_from_payload(&payload) else {
        return Err(refuse(CLOSE_UNAUTHORIZED, "Unauthorized: no token in connection_init"));
    };
    let (expires, disabled) = credential_facts(&state, &token).await;
    let principal: Principal = match auth::authenticate_token(&state, &token).await {
        Ok(p) => p.via_graphql(),
        Err(_) if disabled => return Err(refuse(CLOSE_FORBIDDEN, "Forbidden: account disabled")),
        Err(_) => return Err(refuse(CLOSE_UNAUTHORIZED, "Unauthorized")),
    };
    {
        let mut o = outcome.lock().unwrap_or_else(PoisonError::into_inner);
        o.expires = expires;
        o.accepted = Some(Accepted { token, principal: principal.clone() });
    }
    let mut data = Data::default();
    data.insert(principal);
    data.insert(addr);
    Ok(data)
}

/// Authenticates the connection's credential again after an account change: `None` to carry
/// on, or the close frame that ends the connection.
async fn recheck(state: &AppState, accepted: &Accepted) -> Option<Message> {
    match auth::authenticate_token(state, &accepted.token).await {
        Ok(now) if now.role >= accepted.principal.role => None,
        Ok(now) => {
            tracing::info!(user = %now.username, role = %now.role, "websocket closed: role lowered");
            Some(close(
                CLOSE_FORBIDDEN,
                &format!("Forbidden: role lowered to {}; reconnect", now.role),
            ))
        }
        Err(ApiError::Unauthenticated) => {
            let (_, disabled) = credential_facts(state, &accepted.token).await;
            tracing::info!(user = %accepted.principal.username, disabled, "websocket closed: credential no longer valid");
            Some(if disabled {
                close(CLOSE_FORBIDDEN, "Forbidden: account disabled")
            } else {
                close(CLOSE_UNAUTHORIZED, "Unauthorized: credential revoked")
            })
        }
        Err(e) => {
            // The store failed: keep the connection, the next change or tick tries again.
            tracing::warn!(error = %crate::error::ErrorChain(&e), "cannot re-check a websocket's credential");
            None
        }
    }
}

/// The `type` and `id` of a client message, read without its payload.
#[derive(serde::Deserialize)]
struct MessageHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

/// The id of an operation a client message starts (`subscribe`, or `start` in the older
/// protocol), if it is one.
fn started_operation(bytes: &[u8]) -> Option<String> {
    let head: MessageHead<'_> = serde_json::from_slice(bytes).ok()?;
    matches!(head.kind.as_ref(), "subscribe" | "start")
        .then(|| head.id.unwrap_or_default().into_owned())
}

/// The `error` message refusing operation `id` because its rate limit is spent.
fn rate_limited_message(
    protocol: WebSocketProtocols,
    id: &str,
    retry_after: std::time::Duration,
) -> String {
    let secs = retry_after.as_secs().max(1);
    let error = json!({
        "message": format!("rate limited: retry in {secs} s"),
        "extensions": { "code": "rate_limited", "retryAfter": secs },
    });
    let payload = match protocol {
        WebSocketProtocols::GraphQLWS => json!([error]),
        WebSocketProtocols::SubscriptionsTransportWS => error,
    };
    json!({ "id": id, "type": "error", "payload": payload }).to_string()
}

fn keepalive_message(protocol: WebSocketProtocols) -> String {
    match protocol {
        WebSocketProtocols::GraphQLWS => r#"{"type":"ping"}"#.to_owned(),
        WebSocketProtocols::SubscriptionsTransportWS => r#"{"type":"ka"}"#.to_owned(),
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.to_owned().into() }))
}

async fn serve_socket(
    socket: WebSocket,
    state: AppState,
    schema: BerthSchema,
    protocol: WebSocketProtocols,
    addr: ClientAddr,
) {
    // Listen before authenticating, so that no change after the check is missed.
    let mut changes = state.sessions().subscribe();
    let outcome: Arc<Mutex<InitOutcome>> = Arc::default();
    let (refusals, mut refused) = tokio::sync::mpsc::channel::<String>(REFUSALS_QUEUED);
    let limit_state = state.clone();
    let limit_outcome = Arc::clone(&outcome);
    let (mut sink, incoming) = socket.split();
    let incoming = incoming
        .take_while(|m| {
            futures::future::ready(matches!(m, Ok(m) if !matches!(m, Message::Close(_))))
        })
        .filter_map(|m| {
            futures::future::ready(match m {
                Ok(Message::Text(t)) => Some(t.as_bytes().to_vec()),
                Ok(Message::Binary(b)) => Some(b.to_vec()),
                _ => None,
            })
        })
        .filter(move |bytes| {
            // Every operation started over the socket counts against the caller's per-token
            // limit, as an HTTP request does.
            let key = limit_outcome
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .accepted
                .as_ref()
                .map(|a| a.principal.rate_key());
            let pass = match (key, started_operation(bytes)) {
                (Some(key), Some(id)) => match limit_state.per_token().check(&key) {
                    Ok(()) => true,
                    Err(retry_after) => {
                        let _ = refusals.try_send(rate_limited_message(protocol, &id, retry_after));
                        false
                    }
                },
                _ => true,
            };
            futures::future::ready(pass)
        });
    let init_state = state.clone();
    let init_outcome = Arc::clone(&outcome);
    let mut gql = Box::pin(GqlWebSocket::new(schema, incoming, protocol).on_connection_init(
        move |payload| connection_init(init_state, init_outcome, addr, payload),
    ));
    let cfg = state.config().graphql.clone();
    let shutdown = state.shutdown_token().clone();
    let init_deadline = tokio::time::sleep(cfg.connection_init_timeout);
    tokio::pin!(init_deadline);
    let mut acked = false;
    let mut expiry: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut keepalive = tokio::time::interval(cfg.keepalive_interval);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.reset();
    let mut recheck_timer = tokio::time::interval(cfg.credential_recheck_interval);
    recheck_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck_timer.reset();
    let mut changes_open = true;
    let final_message = loop {
        tokio::select! {
            // In this order: an account change announced before a client message arrived is
            // acted on before that message runs; the connection's own traffic comes last, so
            // that it cannot starve the timers.
            biased;
            change = changes.recv(), if acked && changes_open => {
                let accepted = outcome.lock().unwrap_or_else(PoisonError::into_inner).accepted.clone();
                let concerned = match change {
                    Ok(c) => accepted.as_ref().is_some_and(|a| c.concerns(&a.principal)),
                    // Changes were missed: check.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        changes_open = false;
                        false
                    }
                };
                if concerned
                    && let Some(a) = accepted
                    && let Some(m) = recheck(&state, &a).await
                {
                    break Some(m);
                }
            }
            _ = recheck_timer.tick(), if acked => {
                let accepted = outcome.lock().unwrap_or_else(PoisonError::into_inner).accepted.clone();
                if let Some(a) = accepted
                    && let Some(m) = recheck(&state, &a).await
                {
                    break Some(m);
                }
            }
            () = &mut init_deadline, if !acked => {
                break Some(close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout"));
            }
            () = async { if let Some(e) = expiry.as_mut() { e.await } else { std::future::pending().await } } => {
                break Some(close(CLOSE_UNAUTHORIZED, "Unauthorized: token expired"));
            }
            Some(m) = refused.recv() => {
                if sink.send(Message::Text(m.into())).await.is_err() {
                    break None;
                }
            }
            _ = keepalive.tick(), if acked => {
                if sink.send(Message::Text(keepalive_message(protocol).into())).await.is_err() {
                    break None;
                }
            }
            () = shutdown.cancelled() => {
                break Some(close(1001, "server shutting down"));
            }
            msg = gql.next() => {
                // Everything already ready for this connection is fed, then flushed once (at
                // most `WRITE_BATCH` messages, in order); a close or the end comes after them.
                let mut msg = msg;
                let mut fed = 0usize;
                let end = loop {
                    match msg {
                        Some(WsMessage::Text(t)) => {
                            if !acked && t.contains("connection_ack") {
                                acked = true;
                                let expires = outcome.lock().unwrap_or_else(PoisonError::into_inner).expires;
                                if let Some(at) = expires {
                                    let left = (at - Utc::now()).to_std().unwrap_or_default();
                                    expiry = Some(Box::pin(tokio::time::sleep(left)));
                                }
                            }
                            if sink.feed(Message::Text(t.into())).await.is_err() {
                                break Some(None);
                            }
                            fed += 1;
                            if fed >= WRITE_BATCH {
                                break None;
                            }
                            match gql.next().now_or_never() {
                                Some(next) => msg = next,
                                None => break None,
                            }
                        }
                        Some(WsMessage::Close(code, reason)) => {
                            let refused = outcome.lock().unwrap_or_else(PoisonError::into_inner).refused.take();
                            break Some(Some(match refused {
                                Some((code, reason)) => close(code, &reason),
                                None => close(code, &reason),
                            }));
                        }
                        None => {
                            // The legacy protocol answers a refused init with a connection_error
                            // message and ends; close with the same code as the newer protocol.
                            let refused = outcome.lock().unwrap_or_else(PoisonError::into_inner).refused.take();
                            break Some(refused.map(|(code, reason)| close(code, &reason)));
                        }
                    }
                };
                if fed > 0 && sink.flush().await.is_err() {
                    break None;
                }
                if let Some(last) = end {
                    break last;
                }
            }
        }
    };
    if let Some(m) = final_message {
        let _ = sink.send(m).await;
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_found_under_any_spelling_of_authorization() {
        assert_eq!(
            token_from_payload(&json!({"Authorization": "Bearer abc"})).as_deref(),
            Some("abc")
        );
        assert_eq!(
            token_from_payload(&json!({"authorization": "bearer abc"})).as_deref(),
            Some("abc")
        );
        assert_eq!(
            token_from_payload(&json!({"headers": {"AUTHORIZATION": "Bearer abc"}})).as_deref(),
            Some("abc")
        );
        assert_eq!(token_from_payload(&json!({"authorization": "Basic abc"})), None);
        assert_eq!(token_from_payload(&json!({})), None);
        assert_eq!(token_from_payload(&json!("Bearer abc")), None);
    }

    #[test]
    fn loopback_same_origin_and_listed_origins_are_allowed_and_others_refused() {
        let none: Vec<String> = vec![];
        assert!(origin_allowed("http://localhost:3000", Some("berth:7480"), &none));
        assert!(origin_allowed("http://127.0.0.1:8080", None, &none));
        assert!(origin_allowed("http://[::1]:8080", None, &none));
        assert!(origin_allowed("https://berth.example:7480", Some("berth.example:7480"), &none));
        assert!(!origin_allowed("https://evil.example", Some("berth.example:7480"), &none));
        assert!(!origin_allowed("null", None, &none));
        let listed = vec!["https://dash.example".to_owned()];
        assert!(origin_allowed("https://dash.example", None, &listed));
    }
}
