//! Users (admin CRUD, the last admin), `/me`, own password, and API tokens, over real HTTP.

mod common;

use common::{ADMIN_PASSWORD, TestServer, container_yaml};
use hyper::Method;
use serde_json::json;

#[tokio::test]
async fn admins_create_list_get_update_and_delete_users() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let r = srv
        .post_json(
            "/api/v1/users",
            Some(&admin),
            json!({"username": "ann", "password": "ann-password", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["role"], "viewer");
    assert!(r.json().get("passwordHash").is_none());
    let dup = srv
        .post_json(
            "/api/v1/users",
            Some(&admin),
            json!({"username": "ann", "password": "ann-password", "role": "viewer"}),
        )
        .await;
    assert_eq!(dup.status, 409);
    let weak = srv
        .post_json(
            "/api/v1/users",
            Some(&admin),
            json!({"username": "bob", "password": "short", "role": "viewer"}),
        )
        .await;
    assert_eq!(weak.status, 422);
    let badrole = srv
        .post_json(
            "/api/v1/users",
            Some(&admin),
            json!({"username": "bob", "password": "long-enough", "role": "root"}),
        )
        .await;
    assert_eq!(badrole.status, 422, "{}", badrole.text());

    let list = srv.get("/api/v1/users", Some(&admin)).await;
    let names: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["admin", "ann"]);

    let r = srv
        .send_json(Method::PATCH, "/api/v1/users/ann", Some(&admin), json!({"role": "operator"}))
        .await;
    assert_eq!(r.json()["role"], "operator");
    assert_eq!(srv.get("/api/v1/users/ann", Some(&admin)).await.json()["role"], "operator");

    let r = srv
        .send_json(
            Method::PUT,
            "/api/v1/users/ann/password",
            Some(&admin),
            json!({"password": "new-ann-password"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(srv.login("ann", "ann-password").await.status, 401);
    assert_eq!(srv.login("ann", "new-ann-password").await.status, 200);

    assert_eq!(srv.delete("/api/v1/users/ann", Some(&admin)).await.status, 204);
    assert_eq!(srv.get("/api/v1/users/ann", Some(&admin)).await.status, 404);
}

#[tokio::test]
async fn the_last_admin_cannot_be_deleted_demoted_or_disabled() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    for (method, path, body) in [
        (Method::DELETE, "/api/v1/users/admin", None),
        (Method::PATCH, "/api/v1/users/admin", Some(json!({"role": "operator"}))),
        (Method::PATCH, "/api/v1/users/admin", Some(json!({"disabled": true}))),
    ] {
        let r = match body {
            Some(b) => srv.send_json(method.clone(), path, Some(&admin), b).await,
            None => srv.request(method.clone(), path, Some(&admin), None).await,
        };
        assert_eq!(r.status, 409, "{method} {path}: {}", r.text());
        assert_eq!(r.json()["details"]["reason"], "last_admin");
    }
    // with a second admin, the first can go
    srv.user(&admin, "second", "admin").await;
    let r = srv
        .send_json(Method::PATCH, "/api/v1/users/admin", Some(&admin), json!({"role": "viewer"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // admin's session now runs with viewer rights
    assert_eq!(srv.get("/api/v1/users", Some(&admin)).await.status, 403);
}

#[tokio::test]
async fn everyone_can_read_me_and_change_their_own_password() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let viewer = srv.user(&admin, "vic", "viewer").await;
    let (_, vic_refresh) = srv.tokens("vic", "vic-password").await;
    let me = srv.get("/api/v1/me", Some(&viewer)).await;
    assert_eq!(me.json()["username"], "vic");
    assert_eq!(me.json()["effectiveRole"], "viewer");
    assert_eq!(me.json()["authMethod"], "session");

    let wrong = srv
        .send_json(
            Method::PUT,
            "/api/v1/me/password",
            Some(&viewer),
            json!({"currentPassword": "nope-nope", "newPassword": "vic-new-password"}),
        )
        .await;
    assert_eq!(wrong.status, 403);
    let r = srv
        .send_json(
            Method::PUT,
            "/api/v1/me/password",
            Some(&viewer),
            json!({"currentPassword": "vic-password", "newPassword": "vic-new-password"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(srv.get("/api/v1/me", Some(&viewer)).await.status, 401, "old session ended");
    let r =
        srv.post_json("/api/v1/auth/refresh", None, json!({ "refreshToken": vic_refresh })).await;
    assert_eq!(r.status, 401, "refresh tokens from before the change are revoked");
    assert_eq!(srv.login("vic", "vic-new-password").await.status, 200);
    assert_eq!(srv.login("admin", ADMIN_PASSWORD).await.status, 200);
}

#[tokio::test]
async fn api_tokens_are_shown_once_work_as_bearer_tokens_and_can_be_revoked() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let op = srv.user(&admin, "olga", "operator").await;

    let r =
        srv.post_json("/api/v1/tokens", Some(&op), json!({"name": "ci", "role": "admin"})).await;
    assert_eq!(r.status, 403, "a token cannot outrank its creator");

    let r = srv
        .post_json("/api/v1/tokens", Some(&op), json!({"name": "ci", "expiresInDays": 30}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("berth_"));
    assert_eq!(r.json()["role"], "operator");

    // works as a Bearer token, as its owner's actor
    let me = srv.get("/api/v1/me", Some(&token)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["authMethod"], "apiToken");
    assert_eq!(me.json()["tokenId"], id.as_str());
    assert_eq!(srv.apply_yaml(&token, "", &container_yaml("ci-made", "nginx")).await.status, 200);
    let audit = srv.get("/api/v1/audit?verb=create&name=ci-made", Some(&admin)).await;
    assert_eq!(audit.json()["events"][0]["actor"], format!("token:{id}"));

    // listed without the secret
    let list = srv.get("/api/v1/tokens", Some(&op)).await;
    assert_eq!(list.json().as_array().unwrap().len(), 1);
    assert!(!list.text().contains(&token));

    // a token cannot mint tokens
    assert_eq!(
        srv.post_json("/api/v1/tokens", Some(&token), json!({"name": "x"})).await.status,
        403
    );

    // others cannot see or revoke it; an admin can
    let viewer = srv.user(&admin, "vic", "viewer").await;
    assert_eq!(srv.delete(&format!("/api/v1/tokens/{id}"), Some(&viewer)).await.status, 404);
    assert_eq!(srv.get("/api/v1/tokens?all=true", Some(&viewer)).await.status, 403);
    assert_eq!(
        srv.get("/api/v1/tokens?all=true", Some(&admin)).await.json().as_array().unwrap().len(),
        1
    );

    let r = srv.delete(&format!("/api/v1/tokens/{id}"), Some(&op)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["revoked"].is_string());
    assert_eq!(srv.get("/api/v1/me", Some(&token)).await.status, 401);
}

#[tokio::test]
async fn a_viewer_token_of_an_admin_has_viewer_rights() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let r = srv
        .post_json("/api/v1/tokens", Some(&admin), json!({"name": "ro", "role": "viewer"}))
        .await;
    let token = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(srv.get("/api/v1/containers", Some(&token)).await.status, 200);
    assert_eq!(srv.apply_yaml(&token, "", &container_yaml("x", "nginx")).await.status, 403);
    assert_eq!(srv.get("/api/v1/users", Some(&token)).await.status, 403);
}
