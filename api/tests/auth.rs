//! Login, refresh, logout, the forged-token matrix and login rate limits, over real HTTP.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{ADMIN_PASSWORD, TestServer};
use hyper::Method;
use serde_json::{Value, json};

fn sign_hs256(key: &[u8], header: &Value, claims: &Value) -> String {
    use jsonwebtoken::{EncodingKey, Header};
    let mut h = Header::new(jsonwebtoken::Algorithm::HS256);
    if let Some(alg) = header.get("alg").and_then(Value::as_str) {
        h.alg = alg.parse().unwrap();
    }
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(key)).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims that the server accepts when signed with its key: `sid` must name a live session.
fn good_claims(sub: &str, sid: &str) -> Value {
    json!({
        "sub": sub, "role": "admin", "iss": "berth", "aud": "berth-api",
        "exp": now() + 600, "iat": now(), "jti": "j1", "sid": sid,
    })
}

/// The claims of a real access token.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

fn server_key(srv: &TestServer) -> Vec<u8> {
    std::fs::read(srv.dir.path().join("jwt.key")).unwrap()
}

#[tokio::test]
async fn login_returns_an_access_and_refresh_token_that_work() {
    let srv = TestServer::start().await;
    let r = srv.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["expiresIn"], 900);
    let access = j["accessToken"].as_str().unwrap();
    assert!(j["refreshToken"].as_str().unwrap().starts_with("berthrt_"));
    let me = srv.get("/api/v1/me", Some(access)).await;
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["username"], "admin");
    assert_eq!(me.json()["role"], "admin");
    assert!(me.json().get("passwordHash").is_none());
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_is_401_and_audited() {
    let srv = TestServer::start().await;
    let r = srv.login("admin", "wrong-password").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "unauthenticated");
    assert_eq!(srv.login("nobody", "whatever1").await.status, 401);
    let admin = srv.admin().await;
    let audit = srv.get("/api/v1/audit?verb=login", Some(&admin)).await;
    assert_eq!(audit.status, 200, "{}", audit.text());
    let events = audit.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e["outcome"] == "failure"));
    assert!(!audit.text().contains("wrong-password"));
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let srv = TestServer::start().await;
    let (access1, refresh1) = srv.tokens("admin", ADMIN_PASSWORD).await;
    let r = srv.post_json("/api/v1/auth/refresh", None, json!({ "refreshToken": refresh1 })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let refresh2 = r.json()["refreshToken"].as_str().unwrap().to_owned();
    let access2 = r.json()["accessToken"].as_str().unwrap().to_owned();
    assert_ne!(refresh1, refresh2);
    assert_eq!(srv.get("/api/v1/me", Some(&access2)).await.status, 200);

    // Presenting the rotated token again: reuse. The family is revoked.
    let reuse =
        srv.post_json("/api/v1/auth/refresh", None, json!({ "refreshToken": refresh1 })).await;
    assert_eq!(reuse.status, 401);
    let after =
        srv.post_json("/api/v1/auth/refresh", None, json!({ "refreshToken": refresh2 })).await;
    assert_eq!(after.status, 401, "the successor is revoked too");
    assert_eq!(srv.get("/api/v1/me", Some(&access2)).await.status, 401);
    assert_eq!(srv.get("/api/v1/me", Some(&access1)).await.status, 401);

    let admin = srv.admin().await;
    let audit = srv.get("/api/v1/audit?verb=refresh.reuse", Some(&admin)).await;
    assert_eq!(audit.json()["events"].as_array().unwrap().len(), 1, "{}", audit.text());
}

#[tokio::test]
async fn logout_ends_the_session_and_its_refresh_token() {
    let srv = TestServer::start().await;
    let (access, refresh) = srv.tokens("admin", ADMIN_PASSWORD).await;
    let r = srv
        .post_json("/api/v1/auth/logout", Some(&access), json!({ "refreshToken": refresh }))
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(srv.get("/api/v1/me", Some(&access)).await.status, 401);
    let r = srv.post_json("/api/v1/auth/refresh", None, json!({ "refreshToken": refresh })).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_all_401() {
    let srv = TestServer::start().await;
    let key = server_key(&srv);
    let admin = srv.admin().await;
    let header_b64 = |h: &Value| B64.encode(h.to_string());
    let payload_b64 = |c: &Value| B64.encode(c.to_string());
    // Every forgery below reuses the live session of a real admin token, so each is refused for
    // the flaw it names and not because its session is unknown. The control proves it: the
    // same claims, correctly signed, are accepted.
    let sid = claims_of(&admin)["sid"].as_str().expect("access tokens carry a sid").to_owned();
    let good_claims = |sub: &str| good_claims(sub, &sid);
    let control = sign_hs256(&key, &json!({}), &good_claims("admin"));
    let r = srv.get("/api/v1/me", Some(&control)).await;
    assert_eq!(r.status, 200, "the control token must be accepted: {}", r.text());

    let mut cases: Vec<(&str, String)> = Vec::new();
    // alg none, unsigned
    cases.push((
        "alg none",
        format!(
            "{}.{}.",
            header_b64(&json!({"alg": "none", "typ": "JWT"})),
            payload_b64(&good_claims("admin"))
        ),
    ));
    // wrong key
    cases.push(("wrong key", sign_hs256(&[9u8; 32], &json!({}), &good_claims("admin"))));
    // HS/RS confusion: header says RS256, signed with HMAC over the server key
    {
        let h = header_b64(&json!({"alg": "RS256", "typ": "JWT"}));
        let p = payload_b64(&good_claims("admin"));
        let msg = format!("{h}.{p}");
        use hmac_sha256_sign as sign;
        cases.push((
            "RS256 header with HMAC signature",
            format!("{msg}.{}", sign(&key, msg.as_bytes())),
        ));
    }
    // HS384 instead of the pinned HS256
    cases.push((
        "other HMAC alg",
        sign_hs256(&key, &json!({"alg": "HS384"}), &good_claims("admin")),
    ));
    // expired
    let mut c = good_claims("admin");
    c["exp"] = json!(now() - 3600);
    c["iat"] = json!(now() - 7200);
    cases.push(("expired", sign_hs256(&key, &json!({}), &c)));
    // missing exp
    let mut c = good_claims("admin");
    c.as_object_mut().unwrap().remove("exp");
    cases.push(("missing exp", sign_hs256(&key, &json!({}), &c)));
    // missing jti / role / sid
    for field in ["jti", "role", "sid", "iat", "iss", "aud", "sub"] {
        let mut c = good_claims("admin");
        c.as_object_mut().unwrap().remove(field);
        cases.push(("missing claim", sign_hs256(&key, &json!({}), &c)));
    }
    // wrong aud / iss
    let mut c = good_claims("admin");
    c["aud"] = json!("someone-else");
    cases.push(("wrong aud", sign_hs256(&key, &json!({}), &c)));
    let mut c = good_claims("admin");
    c["iss"] = json!("evil");
    cases.push(("wrong iss", sign_hs256(&key, &json!({}), &c)));
    // tampered payload: a real token with the role raised
    {
        let viewer = srv.user(&admin, "vera", "viewer").await;
        let parts: Vec<&str> = viewer.split('.').collect();
        let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        claims["role"] = json!("admin");
        cases.push((
            "tampered payload",
            format!("{}.{}.{}", parts[0], payload_b64(&claims), parts[2]),
        ));
    }
    // a user that does not exist
    cases.push(("unknown user", sign_hs256(&key, &json!({}), &good_claims("ghost"))));
    // garbage
    cases.push(("garbage", "not.a.jwt".to_owned()));
    cases.push(("empty", String::new()));
    cases.push(("unknown API token", format!("berth_{}", "A".repeat(43))));

    for (name, token) in &cases {
        let r = srv.get("/api/v1/me", Some(token)).await;
        assert_eq!(r.status, 401, "{name}: {}", r.text());
        assert_eq!(r.json()["code"], "unauthenticated", "{name}");
    }
    // and no credentials at all
    assert_eq!(srv.get("/api/v1/me", None).await.status, 401);
}

/// HMAC-SHA256 over `msg`, base64url: a token signed with the server's key but claiming
/// another algorithm.
fn hmac_sha256_sign(key: &[u8], msg: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(msg).finalize();
    let outer = Sha256::new().chain_update(&opad).chain_update(inner).finalize();
    B64.encode(outer)
}

#[tokio::test]
async fn disabled_and_deleted_users_tokens_stop_working() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let dora = srv.user(&admin, "dora", "operator").await;
    let dan = srv.user(&admin, "dan", "operator").await;
    assert_eq!(srv.get("/api/v1/me", Some(&dora)).await.status, 200);

    let r = srv
        .send_json(Method::PATCH, "/api/v1/users/dora", Some(&admin), json!({"disabled": true}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(srv.get("/api/v1/me", Some(&dora)).await.status, 401);
    assert_eq!(srv.login("dora", "dora-password").await.status, 401);

    assert_eq!(srv.delete("/api/v1/users/dan", Some(&admin)).await.status, 204);
    assert_eq!(srv.get("/api/v1/me", Some(&dan)).await.status, 401);
}

#[tokio::test]
async fn a_forged_token_for_a_real_user_signed_with_the_server_key_but_a_revoked_session_is_401() {
    let srv = TestServer::start().await;
    let key = server_key(&srv);
    let (access, refresh) = srv.tokens("admin", ADMIN_PASSWORD).await;
    let sid = claims_of(&access)["sid"].as_str().unwrap().to_owned();
    // While the session lives, a fresh token for it signed with the server key is accepted ...
    let forged = sign_hs256(&key, &json!({}), &good_claims("admin", &sid));
    assert_eq!(srv.get("/api/v1/me", Some(&forged)).await.status, 200);
    assert_eq!(
        srv.post_json("/api/v1/auth/logout", Some(&access), json!({ "refreshToken": refresh }))
            .await
            .status,
        204
    );
    // ... and once it is revoked, neither the real token nor a newly minted one gets in.
    assert_eq!(srv.get("/api/v1/me", Some(&access)).await.status, 401);
    let forged = sign_hs256(&key, &json!({}), &good_claims("admin", &sid));
    assert_eq!(srv.get("/api/v1/me", Some(&forged)).await.status, 401);
}

#[tokio::test]
async fn login_attempts_are_limited_per_user_with_retry_after() {
    let srv = TestServer::start_with(|c| {
        c.login_per_user = berth_api::ratelimit::RateLimit { burst: 3, per_second: 0.001 };
    })
    .await;
    for _ in 0..3 {
        assert_eq!(srv.login("admin", "wrong-password").await.status, 401);
    }
    let r = srv.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["code"], "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    // another user is not affected by admin's limit
    assert_eq!(srv.login("someone", "wrong-password").await.status, 401);
}

#[tokio::test]
async fn login_attempts_are_limited_per_client_address() {
    let srv = TestServer::start_with(|c| {
        c.login_per_address = berth_api::ratelimit::RateLimit { burst: 4, per_second: 0.001 };
    })
    .await;
    for i in 0..4 {
        assert_eq!(srv.login(&format!("user{i}"), "wrong-password").await.status, 401);
    }
    assert_eq!(srv.login("user9", "wrong-password").await.status, 429);
}

#[tokio::test]
async fn each_token_is_rate_limited() {
    let srv = TestServer::start_with(|c| {
        c.per_token = berth_api::ratelimit::RateLimit { burst: 5, per_second: 0.001 };
    })
    .await;
    let admin = srv.admin().await;
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(srv.get("/api/v1/me", Some(&admin)).await.status);
    }
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 429, 429]);
    // a different session has its own budget
    let other = srv.admin().await;
    assert_eq!(srv.get("/api/v1/me", Some(&other)).await.status, 200);
}
