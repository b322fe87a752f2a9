//! [`serve`]: runs the router on a bound listener until `shutdown` resolves, then drains.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::app::router;
use crate::state::AppState;

/// Serves the REST API on `listener` until `shutdown` completes; in-flight requests finish
/// before this returns (graceful shutdown). The peer address of each connection is available to
/// handlers for per-address login rate limits.
///
/// # Errors
///
/// The I/O error that stopped the accept loop.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown_token().clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            token.cancel();
        })
        .await
}
