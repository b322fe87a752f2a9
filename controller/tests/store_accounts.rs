//! Accounts in the sled store: users, refresh-token families with reuse detection, API tokens;
//! every change audited without secrets.

mod store_support;

use berth_controller::store::{
    AccountStore, AuditLog, AuditQuery, NewApiToken, NewUser, RefreshRotation, Role, StoreError,
    UserUpdate, WriteContext, hash_password, token_hash, verify_password,
};
use chrono::{Duration, Utc};
use store_support::{open, raw_sled};

fn admin() -> WriteContext {
    WriteContext::rest_user("admin")
}

async fn user(store: &impl AccountStore, name: &str, role: Role) -> anyhow::Result<()> {
    let password_hash = hash_password("correct horse battery")?;
    store.create_user(&admin(), NewUser { username: name.into(), password_hash, role }).await?;
    Ok(())
}

#[tokio::test]
async fn users_are_created_read_updated_and_deleted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    user(&store, "alice", Role::Operator).await?;
    user(&store, "bob", Role::Viewer).await?;
    let dup = store
        .create_user(
            &admin(),
            NewUser { username: "alice".into(), password_hash: "$x".into(), role: Role::Admin },
        )
        .await;
    assert!(matches!(dup, Err(StoreError::AccountExists { .. })), "{dup:?}");
    let bad = store
        .create_user(
            &admin(),
            NewUser { username: "a b".into(), password_hash: "$x".into(), role: Role::Admin },
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid { .. })), "{bad:?}");

    let alice = store.get_user("alice").await?.ok_or_else(|| anyhow::anyhow!("alice missing"))?;
    assert_eq!(alice.role, Role::Operator);
    assert!(verify_password(&alice.password_hash, "correct horse battery"));
    assert_eq!(
        store.list_users().await?.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );

    let updated = store
        .update_user(
            &admin(),
            "alice",
            UserUpdate { role: Some(Role::Admin), disabled: Some(true), ..Default::default() },
        )
        .await?;
    assert_eq!((updated.role, updated.disabled), (Role::Admin, true));
    let deleted = store.delete_user(&admin(), "bob").await?;
    assert_eq!(deleted.username, "bob");
    assert_eq!(store.get_user("bob").await?, None);
    let missing = store.delete_user(&admin(), "bob").await;
    assert!(matches!(missing, Err(StoreError::AccountNotFound { .. })), "{missing:?}");
    Ok(())
}

#[tokio::test]
async fn account_changes_are_audited_without_hashes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    user(&store, "alice", Role::Operator).await?;
    let new_hash = hash_password("another password")?;
    store
        .update_user(
            &admin(),
            "alice",
            UserUpdate { password_hash: Some(new_hash.clone()), ..Default::default() },
        )
        .await?;
    let token = "berth_tok_0123456789abcdef";
    store
        .create_api_token(
            &admin(),
            NewApiToken {
                name: "ci".into(),
                owner: "alice".into(),
                role: Role::Operator,
                token_hash: token_hash(token),
                expires: None,
            },
        )
        .await?;
    let page = store.query(&AuditQuery::default()).await?;
    let verbs: Vec<&str> = page.events.iter().map(|e| e.verb.as_str()).collect();
    assert_eq!(verbs, ["user.create", "user.update", "token.create"]);
    assert_eq!(page.events[1].diff, ["password"]);
    assert!(store.verify().await?.is_ok());
    store.close();
    drop(store);

    let db = raw_sled(dir.path())?;
    for item in db.open_tree("audit")?.iter() {
        let (_, value) = item?;
        let text = String::from_utf8_lossy(&value);
        assert!(!text.contains("$argon2id"), "password hash in the audit log: {text}");
        assert!(!text.contains(&token_hash(token)), "token hash in the audit log: {text}");
        assert!(!text.contains(token), "token in the audit log: {text}");
    }
    Ok(())
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    user(&store, "alice", Role::Operator).await?;
    let ctx = WriteContext::rest_user("alice");
    let expires = Utc::now() + Duration::hours(1);
    let first = store.issue_refresh_token(&ctx, "alice", &token_hash("r1"), expires, None).await?;

    let second = match store
        .rotate_refresh_token(&ctx, &token_hash("r1"), &token_hash("r2"), expires)
        .await?
    {
        RefreshRotation::Rotated(t) => t,
        other => panic!("expected a rotation, got {other:?}"),
    };
    assert_eq!(second.family_id, first.family_id);

    // Presenting r1 again: someone kept a copy. The family is revoked...
    let reuse =
        store.rotate_refresh_token(&ctx, &token_hash("r1"), &token_hash("r3"), expires).await?;
    assert_eq!(
        reuse,
        RefreshRotation::ReuseDetected {
            family_id: first.family_id.clone(),
            username: "alice".into()
        }
    );
    // ...so the legitimate successor stops working too.
    let after =
        store.rotate_refresh_token(&ctx, &token_hash("r2"), &token_hash("r4"), expires).await?;
    assert_eq!(after, RefreshRotation::Revoked);
    let unknown =
        store.rotate_refresh_token(&ctx, &token_hash("nope"), &token_hash("r5"), expires).await?;
    assert_eq!(unknown, RefreshRotation::Unknown);

    let reuse_events = store
        .query(&AuditQuery { verb: Some("refresh.reuse".into()), ..Default::default() })
        .await?;
    assert_eq!(reuse_events.events.len(), 1);
    Ok(())
}

#[tokio::test]
async fn expired_refresh_tokens_and_logout_end_a_family() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    user(&store, "alice", Role::Operator).await?;
    let ctx = WriteContext::rest_user("alice");
    let past = Utc::now() - Duration::seconds(1);
    let future = Utc::now() + Duration::hours(1);
    store.issue_refresh_token(&ctx, "alice", &token_hash("old"), past, None).await?;
    let expired =
        store.rotate_refresh_token(&ctx, &token_hash("old"), &token_hash("new"), future).await?;
    assert_eq!(expired, RefreshRotation::Expired);

    let t = store.issue_refresh_token(&ctx, "alice", &token_hash("a"), future, None).await?;
    let family = store.revoke_refresh_family(&ctx, &token_hash("a")).await?;
    assert_eq!(family.as_ref().map(|f| f.id.as_str()), Some(t.family_id.as_str()));
    assert!(family.is_some_and(|f| f.revoked.is_some()));
    let r = store.rotate_refresh_token(&ctx, &token_hash("a"), &token_hash("b"), future).await?;
    assert_eq!(r, RefreshRotation::Revoked);
    assert_eq!(store.revoke_refresh_family(&ctx, &token_hash("unknown")).await?, None);

    let unknown_user =
        store.issue_refresh_token(&ctx, "nobody", &token_hash("x"), future, None).await;
    assert!(matches!(unknown_user, Err(StoreError::AccountNotFound { .. })), "{unknown_user:?}");
    Ok(())
}

#[tokio::test]
async fn all_refresh_families_of_a_user_can_be_revoked_at_once() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    user(&store, "alice", Role::Operator).await?;
    user(&store, "bob", Role::Operator).await?;
    let future = Utc::now() + Duration::hours(1);
    for (u, t) in [("alice", "a1"), ("alice", "a2"), ("bob", "b1")] {
        store.issue_refresh_token(&admin(), u, &token_hash(t), future, None).await?;
    }
    assert_eq!(store.revoke_user_refresh_families(&admin(), "alice").await?, 2);
    for t in ["a1", "a2"] {
        let r = store
            .rotate_refresh_token(
                &admin(),
                &token_hash(t),
                &token_hash(&format!("{t}-next")),
                future,
            )
            .await?;
        assert_eq!(r, RefreshRotation::Revoked, "{t}");
    }
    let r =
        store.rotate_refresh_token(&admin(), &token_hash("b1"), &token_hash("b2"), future).await?;
    assert!(matches!(r, RefreshRotation::Rotated(_)), "{r:?}");
    assert_eq!(store.revoke_user_refresh_families(&admin(), "alice").await?, 0);
    Ok(())
}

#[tokio::test]
async fn api_tokens_are_found_by_hash_listed_and_revoked() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path());
    user(&store, "alice", Role::Operator).await?;
    user(&store, "bob", Role::Viewer).await?;
    let new = |owner: &str, secret: &str, expires| NewApiToken {
        name: format!("{owner}-ci"),
        owner: owner.into(),
        role: Role::Viewer,
        token_hash: token_hash(secret),
        expires,
    };
    let ci = store.create_api_token(&admin(), new("alice", "s1", None)).await?;
    store
        .create_api_token(&admin(), new("bob", "s2", Some(Utc::now() - Duration::seconds(1))))
        .await?;
    let dup = store.create_api_token(&admin(), new("alice", "s1", None)).await;
    assert!(matches!(dup, Err(StoreError::AccountExists { .. })), "{dup:?}");
    let orphan = store.create_api_token(&admin(), new("nobody", "s3", None)).await;
    assert!(matches!(orphan, Err(StoreError::AccountNotFound { .. })), "{orphan:?}");

    let found = store
        .find_api_token(&token_hash("s1"))
        .await?
        .ok_or_else(|| anyhow::anyhow!("not found"))?;
    assert_eq!(found.id, ci.id);
    assert!(found.is_active(Utc::now()));
    let expired = store
        .find_api_token(&token_hash("s2"))
        .await?
        .ok_or_else(|| anyhow::anyhow!("not found"))?;
    assert!(!expired.is_active(Utc::now()));
    assert_eq!(store.find_api_token(&token_hash("other")).await?, None);
    assert_eq!(store.list_api_tokens(None).await?.len(), 2);
    assert_eq!(store.list_api_tokens(Some("alice")).await?.len(), 1);

    let revoked = store.revoke_api_token(&admin(), &ci.id).await?;
    assert!(revoked.revoked.is_some());
    let found = store.find_api_token(&token_hash("s1")).await?;
    assert!(found.is_some_and(|t| !t.is_active(Utc::now())));
    Ok(())
}
