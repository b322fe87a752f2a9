//! [`serve`]: runs the router on a bound listener until `shutdown` resolves, then drains.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::app::router;
use crate::state::AppState;

/// Serves the REST API on `listener` until `shutdown` completes; in-flight requests finish
/// before this returns (graceful shutdown) and open watch streams end. The peer address of each
/// connection is available to handlers for per-address login rate limits.
///
/// When the state's [`ServeConfig`](crate::ServeConfig) names both `tls_cert` and `tls_key`,
/// connections are TLS (HTTP/1.1 over rustls); otherwise plain HTTP.
///
/// # Errors
///
/// The I/O error that stopped the accept loop, or (kind `InvalidInput`) an unusable TLS
/// certificate or key.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown_token().clone();
    let tls = match (&state.config().tls_cert, &state.config().tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                crate::error::ErrorChain(&e).to_string(),
            )
        })?),
        (None, None) => None,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "TLS needs both a certificate and a key",
            ));
        }
    };
    let state_for_drain = state.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let shutdown = async move {
        shutdown.await;
        token.cancel();
    };
    let served = match tls {
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
        Some(acceptor) => {
            use axum::serve::ListenerExt as _;
            let listener = crate::tls::TlsListener::new(listener, acceptor).tap_io(|_| {});
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await
        }
    };
    // Exec sessions cut off by the shutdown still get their `exec.end` audit event.
    state_for_drain.graphql().exec.drain().await;
    served
}

/// Why the server could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The signing key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] crate::auth::jwt::KeyError),
    /// The first admin could not be created.
    #[error(transparent)]
    Bootstrap(#[from] crate::auth::BootstrapError),
}

/// What [`prepare`] built.
#[derive(Debug)]
pub struct Prepared {
    /// The state to pass to [`serve`] (add the Docker driver with [`AppState::with_driver`]).
    pub state: AppState,
    /// Set on first start: the admin user created and, if it was generated, its password, which
    /// the binary prints once.
    pub bootstrap: Option<crate::auth::BootstrapAdmin>,
}

/// Prepares everything [`serve`] needs from a configuration and an open store: creates the
/// data directory (0700), loads or generates the token signing key, and on first start creates
/// the `admin` user from `admin_password` (`BERTH_ADMIN_PASSWORD`) or a generated password.
///
/// # Errors
///
/// [`StartError`] when the directory, the key or the first admin cannot be set up.
pub async fn prepare<S>(
    config: crate::ServeConfig,
    store: S,
    metrics: crate::Metrics,
    ready: tokio::sync::watch::Receiver<bool>,
    admin_password: Option<String>,
) -> Result<Prepared, StartError>
where
    S: berth_controller::store::ResourceStore
        + berth_controller::store::AuditLog
        + berth_controller::store::AccountStore
        + berth_controller::store::StoreBackup
        + Clone
        + 'static,
{
    let dir = &config.data_dir;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| StartError::DataDir { path: dir.clone(), source })?;
    let keys = crate::auth::jwt::JwtKeys::load_or_create(
        &config.signing_key_path(),
        config.issuer.clone(),
    )?;
    let bootstrap = crate::auth::bootstrap_admin(&store, admin_password).await?;
    Ok(Prepared { state: AppState::new(config, keys, store, metrics, ready), bootstrap })
}
