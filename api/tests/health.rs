//! `/healthz`, `/readyz`, `/metrics` and the error shape of unknown routes, over real HTTP.

mod common;

use common::TestServer;

#[tokio::test]
async fn healthz_answers_ok_without_credentials() {
    let srv = TestServer::start().await;
    let r = srv.get("/healthz", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    srv.stop().await;
}

#[tokio::test]
async fn readyz_follows_the_controllers_readiness_flag() {
    let srv = TestServer::start().await;
    assert_eq!(srv.get("/readyz", None).await.status, 503);
    srv.ready.send(true).unwrap();
    assert_eq!(srv.get("/readyz", None).await.status, 200);
    srv.ready.send(false).unwrap();
    assert_eq!(srv.get("/readyz", None).await.status, 503);
}

#[tokio::test]
async fn metrics_count_requests_by_matched_route() {
    let srv = TestServer::start().await;
    srv.get("/healthz", None).await;
    srv.get("/healthz", None).await;
    srv.get("/no/such/route", None).await;
    srv.state.metrics().set_gauge("berth_queue_depth", "Work queue depth.", &[], 3.0);
    let r = srv.get("/metrics", None).await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text();
    assert!(
        text.contains(r#"berth_http_requests_total{method="GET",route="/healthz",status="200"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"route="<unmatched>",status="404"} 1"#), "{text}");
    assert!(
        text.contains(
            r#"berth_http_request_duration_seconds_count{method="GET",route="/healthz"} 2"#
        ),
        "{text}"
    );
    assert!(text.contains("berth_queue_depth 3"), "{text}");
}

#[tokio::test]
async fn unknown_routes_answer_404_in_the_error_shape() {
    let srv = TestServer::start().await;
    let r = srv.get("/api/v1/nope/a/b/c/d", None).await;
    assert_eq!(r.status, 404);
    let body = r.json();
    assert_eq!(body["code"], "not_found");
    assert!(body["message"].is_string());
    assert!(body.get("details").is_some());
}

#[tokio::test]
async fn a_wrong_method_answers_405_in_the_error_shape() {
    let srv = TestServer::start().await;
    let r = srv.request(hyper::Method::DELETE, "/healthz", None, None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["code"], "method_not_allowed");
}
