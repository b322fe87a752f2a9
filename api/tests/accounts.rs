//! Accounts over HTTP against a real server (issue 11): the own-password limiter, admin
//! password resets that revoke API tokens, the absolute session lifetime, and failed logins
//! that can no longer fill the data directory.

mod common;

use std::path::Path;
use std::time::Duration;

use hyper::Method;
use serde_json::json;

use common::{ADMIN_PASSWORD, TestServer};

/// Bytes held by every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read the data dir").flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        total += if meta.is_dir() { dir_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

async fn login_events(srv: &TestServer, admin: &str) -> Vec<serde_json::Value> {
    let r = srv.get("/api/v1/audit?actor=anonymous&limit=1000", Some(admin)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["verb"].as_str().is_some_and(|v| v.starts_with("login")))
        .cloned()
        .collect()
}

#[tokio::test]
async fn issue11_hole12_own_password_changes_are_rate_limited_like_login() {
    let srv = TestServer::start_with(|c| {
        c.login_per_user = berth_api::ratelimit::RateLimit { burst: 4, per_second: 0.001 };
    })
    .await;
    let admin = srv.admin().await;
    // Logging in takes one of ann's four attempts.
    let ann = srv.user(&admin, "ann", "viewer").await;
    let change =
        |current: &str| json!({"currentPassword": current, "newPassword": "ann-new-password"});
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = srv
            .send_json(Method::PUT, "/api/v1/me/password", Some(&ann), change("a-wrong-guess"))
            .await;
        statuses.push(r.status);
        if r.status == 429 {
            assert_eq!(r.json()["code"], "rate_limited", "{}", r.text());
            let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1);
        }
    }
    assert_eq!(statuses, vec![403, 403, 403, 429, 429]);
    // Once limited, even the right password is not checked (no oracle), and nothing changed.
    let r =
        srv.send_json(Method::PUT, "/api/v1/me/password", Some(&ann), change("ann-password")).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(srv.get("/api/v1/me", Some(&ann)).await.status, 200);
}

#[tokio::test]
async fn issue11_hole12_an_admin_password_reset_revokes_api_tokens_only_when_asked() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let ann = srv.user(&admin, "ann", "operator").await;
    let r = srv.post_json("/api/v1/tokens", Some(&ann), json!({"name": "ci"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();

    // Without revokeTokens (the default) the session ends and the API token keeps working.
    let r = srv
        .send_json(
            Method::PUT,
            "/api/v1/users/ann/password",
            Some(&admin),
            json!({"password": "ann-second-password"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(srv.get("/api/v1/me", Some(&ann)).await.status, 401);
    assert_eq!(srv.get("/api/v1/me", Some(&token)).await.status, 200);

    // With revokeTokens the API token stops working too, and the token list says revoked.
    let r = srv
        .send_json(
            Method::PUT,
            "/api/v1/users/ann/password",
            Some(&admin),
            json!({"password": "ann-third-password", "revokeTokens": true}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(srv.get("/api/v1/me", Some(&token)).await.status, 401);
    let list = srv.get("/api/v1/tokens?owner=ann", Some(&admin)).await.json();
    assert!(list[0]["revoked"].is_string(), "{list}");
}

#[tokio::test]
async fn issue11_hole12_a_session_cannot_be_refreshed_past_its_absolute_lifetime() {
    let max_age = Duration::from_secs(4);
    let srv = TestServer::start_with(|c| {
        c.session_max_age = max_age;
        c.refresh_token_ttl = Duration::from_secs(3600);
    })
    .await;
    let (_, refresh) = srv.tokens("admin", ADMIN_PASSWORD).await;
    // The session started before this instant (hashing may take a while on a loaded machine).
    let started = tokio::time::Instant::now();
    // Refreshing inside the lifetime works (and slides the refresh token) ...
    let r = srv.post_json("/api/v1/auth/refresh", None, json!({"refreshToken": refresh})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let refresh = r.json()["refreshToken"].as_str().unwrap().to_owned();
    // ... but not past it, however fresh the refresh token is.
    tokio::time::sleep_until(started + max_age + Duration::from_millis(500)).await;
    let r = srv.post_json("/api/v1/auth/refresh", None, json!({"refreshToken": refresh})).await;
    assert_eq!(r.status, 401, "a session older than session_max_age was refreshed");
    // Logging in again starts a new session.
    srv.tokens("admin", ADMIN_PASSWORD).await;
}

#[tokio::test]
async fn issue11_hole5_huge_login_usernames_are_refused_before_hashing_or_audit() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let before = dir_bytes(srv.dir.path());
    // Just under the 1 MiB body limit, as in the review's attack.
    let huge = "u".repeat(1024 * 1024 - 100);
    for i in 0..60 {
        let r = srv.login(&format!("{i}{huge}"), "wrong-password").await;
        assert!([400, 401, 429].contains(&r.status), "attempt {i}: {} {}", r.status, r.text());
    }
    let grown = dir_bytes(srv.dir.path()).saturating_sub(before);
    assert!(grown < 1024 * 1024, "60 anonymous logins grew the data dir by {grown} bytes");
    let r = srv.login(&"u".repeat(257), "wrong-password").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("256"), "{}", r.text());
    assert!(login_events(&srv, &admin).await.is_empty());
}

#[tokio::test]
async fn issue11_hole5_failed_logins_audit_a_short_clean_name_and_limited_ones_are_counted() {
    let srv = TestServer::start_with(|c| {
        c.login_per_address = berth_api::ratelimit::RateLimit { burst: 4, per_second: 0.001 };
    })
    .await;
    let admin = srv.admin().await; // one of the address's four attempts
    let name = format!("evil\n{}", "x".repeat(250));
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(srv.login(&name, "wrong-password").await.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 37, "{statuses:?}");
    let events = login_events(&srv, &admin).await;
    let failed: Vec<_> = events.iter().filter(|e| e["verb"] == "login").collect();
    assert_eq!(failed.len(), 3, "failed-login events (rate-limited ones must not be among them)");
    for e in &failed {
        let n = e["name"].as_str().expect("name");
        assert!(n.chars().count() <= 65 && !n.chars().any(char::is_control), "{n:?}");
        assert!(n.starts_with("evil"), "{n:?}");
    }
    let limited: Vec<_> = events.iter().filter(|e| e["verb"] == "login.rate_limited").collect();
    assert_eq!(limited.len(), 1, "one summary, not one event per refused attempt");
    let counted = srv.state.metrics().value("berth_login_rate_limited_total", &[]);
    assert_eq!(counted, Some(37.0));
}
