//! A revoked login session stays revoked across a server restart: access tokens name their
//! session (refresh family), and the server reads the family from the store when it has not
//! seen the session itself. Real server on 127.0.0.1:0, real sled store on disk, restarted on
//! the same data directory.

mod common;

use common::{ADMIN_PASSWORD, TestServer};
use serde_json::json;

#[tokio::test]
async fn a_logged_out_sessions_access_token_is_refused_after_a_restart() {
    let srv = TestServer::start().await;
    let (gone_access, gone_refresh) = srv.tokens("admin", ADMIN_PASSWORD).await;
    let (live_access, live_refresh) = srv.tokens("admin", ADMIN_PASSWORD).await;
    let r = srv
        .post_json(
            "/api/v1/auth/logout",
            Some(&gone_access),
            json!({ "refreshToken": gone_refresh }),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(srv.get("/api/v1/me", Some(&gone_access)).await.status, 401);

    let srv = srv.restart().await;
    let r = srv.get("/api/v1/me", Some(&gone_access)).await;
    assert_eq!(r.status, 401, "a logged-out session after a restart: {}", r.text());
    assert_eq!(r.json()["code"], "unauthenticated");
    // The other session was not revoked: its access token still works after the restart (read
    // from the store), and again (from the cache).
    for _ in 0..2 {
        let r = srv.get("/api/v1/me", Some(&live_access)).await;
        assert_eq!(r.status, 200, "a live session after a restart: {}", r.text());
    }
    // Logging the live session out with the access token alone (no body) ends it at once, its
    // refresh token included, and for good.
    let r = srv.request(hyper::Method::POST, "/api/v1/auth/logout", Some(&live_access), None).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(srv.get("/api/v1/me", Some(&live_access)).await.status, 401);
    let srv = srv.restart().await;
    assert_eq!(srv.get("/api/v1/me", Some(&live_access)).await.status, 401);
    let r =
        srv.post_json("/api/v1/auth/refresh", None, json!({ "refreshToken": live_refresh })).await;
    assert_eq!(r.status, 401, "the refresh token of a logged-out session: {}", r.text());
}

#[tokio::test]
async fn a_family_revoked_for_refresh_reuse_stays_revoked_after_a_restart() {
    let srv = TestServer::start().await;
    let (first_access, first_refresh) = srv.tokens("admin", ADMIN_PASSWORD).await;
    let r =
        srv.post_json("/api/v1/auth/refresh", None, json!({ "refreshToken": first_refresh })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let second_access = r.json()["accessToken"].as_str().unwrap().to_owned();
    // Presenting the rotated token again revokes the whole family.
    let r =
        srv.post_json("/api/v1/auth/refresh", None, json!({ "refreshToken": first_refresh })).await;
    assert_eq!(r.status, 401, "{}", r.text());

    let srv = srv.restart().await;
    for (which, token) in [("first", &first_access), ("second", &second_access)] {
        let r = srv.get("/api/v1/me", Some(token)).await;
        assert_eq!(r.status, 401, "{which} access token after a restart: {}", r.text());
    }
    // A new login still works.
    let (access, _) = srv.tokens("admin", ADMIN_PASSWORD).await;
    assert_eq!(srv.get("/api/v1/me", Some(&access)).await.status, 200);
}

#[tokio::test]
async fn sessions_ended_by_a_password_change_stay_ended_after_a_restart() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let alice = srv.user(&admin, "alice", "operator").await;
    // A second session of alice's, opened before the change.
    let (other_alice, _) = srv.tokens("alice", "alice-password").await;
    let r = srv
        .send_json(
            hyper::Method::PUT,
            "/api/v1/me/password",
            Some(&alice),
            json!({ "currentPassword": "alice-password", "newPassword": "alice-new-password" }),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());

    let srv = srv.restart().await;
    for token in [&alice, &other_alice] {
        assert_eq!(srv.get("/api/v1/me", Some(token)).await.status, 401);
    }
    // A session opened after the restart (so read from the store and cached) ends at once
    // when the admin resets her password.
    let (fresh, _) = srv.tokens("alice", "alice-new-password").await;
    assert_eq!(srv.get("/api/v1/me", Some(&fresh)).await.status, 200);
    let admin = srv.admin().await;
    let r = srv
        .send_json(
            hyper::Method::PUT,
            "/api/v1/users/alice/password",
            Some(&admin),
            json!({ "password": "alice-third-password" }),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(srv.get("/api/v1/me", Some(&fresh)).await.status, 401);
}
