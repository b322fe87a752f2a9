//! The role matrix: every registered route has a policy entry, and every route × role gets
//! exactly what the policy table says, over real HTTP.

mod common;

use berth_api::policy::{Access, ROLES, ROUTE_POLICY, authorize, route_policy};
use common::TestServer;

fn concrete(path: &str) -> String {
    path.replace("{plural}", "containers")
        .replace("{namespace}", "default")
        .replace("{name}", "nothing-here")
        .replace("{username}", "nobody")
        .replace("{id}", "no-such-token")
}

#[test]
fn every_registered_route_has_a_policy_entry_and_every_entry_a_route() {
    let routes = berth_api::app::routes();
    for (method, path, _) in &routes {
        assert!(route_policy(method, path).is_some(), "{method} {path} has no policy entry");
    }
    for p in ROUTE_POLICY {
        assert!(
            routes.iter().any(|(m, path, _)| *m == p.method && *path == p.path),
            "policy entry {} {} names no route",
            p.method,
            p.path
        );
    }
}

#[tokio::test]
async fn every_route_and_role_gets_what_the_policy_table_says() {
    let srv = TestServer::start().await;
    let admin = srv.admin().await;
    let operator = srv.user(&admin, "olga", "operator").await;
    let viewer = srv.user(&admin, "victor", "viewer").await;
    let token_of = |role| match role {
        berth_api::Role::Admin => admin.clone(),
        berth_api::Role::Operator => operator.clone(),
        berth_api::Role::Viewer => viewer.clone(),
    };
    let mut checked = 0;
    let mut denials = 0;
    for p in ROUTE_POLICY {
        // Logout would end the session the rest of the matrix uses; it is covered in auth.rs.
        if p.path == "/api/v1/auth/logout" {
            continue;
        }
        let path = concrete(p.path);
        match p.access {
            Access::Public => {
                let r = srv.request(p.method.clone(), &path, None, None).await;
                assert!(
                    r.status != 401 && r.status != 403,
                    "{} {path} public but got {}",
                    p.method,
                    r.status
                );
                checked += 1;
            }
            Access::Authenticated(action) => {
                let r = srv.request(p.method.clone(), &path, None, None).await;
                assert_eq!(r.status, 401, "{} {path} without a token", p.method);
                for role in ROLES {
                    let r = srv.request(p.method.clone(), &path, Some(&token_of(role)), None).await;
                    if authorize(role, action).is_ok() {
                        assert!(
                            r.status != 401 && r.status != 403,
                            "{} {path} as {role} should be allowed, got {}: {}",
                            p.method,
                            r.status,
                            r.text()
                        );
                    } else {
                        assert_eq!(
                            r.status,
                            403,
                            "{} {path} as {role} should be denied: {}",
                            p.method,
                            r.text()
                        );
                        assert_eq!(r.json()["code"], "forbidden");
                        denials += 1;
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 50, "the matrix covered only {checked} cases");
    let audit = srv.get("/api/v1/audit?verb=request.denied&limit=1000", Some(&admin)).await;
    let denied = audit.json()["events"].as_array().unwrap().len();
    assert_eq!(denied, denials, "every denied request is audited once");
}
