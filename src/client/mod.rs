//! The REST client the CLI commands share: finds the server and the token, sends requests,
//! refreshes an expired session, and turns the API's `{code, message, details}` errors into
//! [`ClientError`]s.
//!
//! Resolution order, for the server and the token alike: the flag (`--server`, `--token`),
//! then the environment (`BERTH_SERVER`, `BERTH_TOKEN`), then the contexts file written by
//! `berth login` ([`config`]).

pub mod config;
pub mod graphql;
pub mod resources;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use config::{ConfigError, ConfigFile, Context, normalize_server};

/// Flags every command that talks to a server takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientOpts {
    /// The berth server's URL (`http://127.0.0.1:7480`); the login context's when omitted.
    #[arg(long, env = "BERTH_SERVER", value_name = "URL", global = true)]
    pub server: Option<String>,
    /// An access or API token; the login context's when omitted.
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true, value_name = "TOKEN", global = true)]
    pub token: Option<String>,
    /// Which saved context to use (from `berth login --context NAME`).
    #[arg(long, value_name = "NAME", global = true)]
    pub context: Option<String>,
    /// The contexts file (default `$XDG_CONFIG_HOME/berth/config.yaml`).
    #[arg(
        long = "contexts-file",
        env = "BERTH_CONTEXTS_FILE",
        value_name = "FILE",
        global = true,
        hide = true
    )]
    pub config: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for an `https://` server, besides the public
    /// roots (for HTTP and the websocket alike); `berth login` keeps it in the context.
    #[arg(long, env = "BERTH_CA_CERT", value_name = "FILE", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Print error details (the server's structured detail, causes).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

impl ClientOpts {
    /// The contexts file in effect.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoConfigDir`] when no path is given and no home is known.
    pub fn config_path(&self) -> Result<PathBuf, ConfigError> {
        match &self.config {
            Some(p) => Ok(p.clone()),
            None => config::default_path(),
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No server was named anywhere.
    #[error("no server: pass --server URL, set BERTH_SERVER, or run `berth login --server URL`")]
    NoServer,
    /// There is no token for this server.
    #[error("not logged in to {0}: run `berth login --server {0}` or set BERTH_TOKEN")]
    NotLoggedIn(String),
    /// The server could not be reached (refused, DNS, TLS, timeout).
    #[error("cannot reach the berth server at {server}")]
    Connect {
        /// The server's URL.
        server: String,
        /// What the HTTP client said.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The stable machine code (`not_found`, `conflict`, ...).
        code: String,
        /// The server's message.
        message: String,
        /// Structured detail, or `null`.
        details: Value,
    },
    /// The server's answer is not what this client understands.
    #[error("unexpected answer from the server for {what}")]
    Decode {
        /// The request.
        what: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The contexts file could not be read or written.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The CA certificate file cannot be used.
    #[error("cannot use the CA certificates in {path}: {reason}")]
    CaCert {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    /// Whether trying again later may succeed (the server is down, busy or rate limiting).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } => true,
            Self::Api { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The API's machine code, when the server answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether this is the server's `404 not_found`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status: 404, .. })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
    #[serde(default)]
    details: Value,
}

/// The token pair `POST /api/v1/auth/login` and `/auth/refresh` answer.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    /// The access JWT.
    pub access_token: String,
    /// The single-use refresh token.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPair").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    Empty,
    /// JSON.
    Json(Value),
}

#[derive(Default)]
struct Session {
    access: Option<String>,
    refresh: Option<String>,
    expires_at: Option<chrono::DateTime<Utc>>,
    /// The contexts file and context name to save a refreshed pair to.
    persist: Option<(PathBuf, String)>,
}

/// A connection to one berth server.
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// The TLS trust for `wss://`, the same as the HTTP client's.
    tls: Arc<rustls::ClientConfig>,
    session: Mutex<Session>,
    verbose: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish_non_exhaustive()
    }
}

/// The TLS trust of both the HTTP client and the websocket: the public roots (webpki-roots,
/// as reqwest's own rustls default) plus the certificates in `ca`, if given.
///
/// # Errors
///
/// [`ClientError::CaCert`] when the file cannot be read or holds no certificate.
pub fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, ClientError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca {
        let err = |reason: String| ClientError::CaCert { path: path.to_owned(), reason };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no PEM certificate in it".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| err(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::CaCert {
            path: ca.map(Path::to_owned).unwrap_or_default(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

fn http_client(tls: &rustls::ClientConfig) -> Result<reqwest::Client, ClientError> {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("berth-cli/", env!("CARGO_PKG_VERSION")))
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| ClientError::CaCert { path: PathBuf::new(), reason: e.to_string() })
}

impl Client {
    /// A client without credentials, for `login`, trusting the public roots and `ca`.
    ///
    /// # Errors
    ///
    /// [`ClientError::CaCert`] when `ca` cannot be used.
    pub fn anonymous(server: &str, verbose: bool, ca: Option<&Path>) -> Result<Self, ClientError> {
        let tls = tls_config(ca)?;
        Ok(Self {
            base: normalize_server(server),
            http: http_client(&tls)?,
            tls: Arc::new(tls),
            session: Mutex::new(Session::default()),
            verbose,
        })
    }

    /// A client with a fixed token (an API token, or an access token from elsewhere).
    ///
    /// # Errors
    ///
    /// [`ClientError::CaCert`] when `ca` cannot be used.
    pub fn with_token(server: &str, token: &str, ca: Option<&Path>) -> Result<Self, ClientError> {
        let c = Self::anonymous(server, false, ca)?;
        c.session().access = Some(token.to_owned());
        Ok(c)
    }

    /// The server and token as the flags, the environment and the contexts file say.
    ///
    /// # Errors
    ///
    /// [`ClientError::NoServer`], [`ClientError::NotLoggedIn`], or a contexts-file error.
    pub fn connect(opts: &ClientOpts) -> Result<Self, ClientError> {
        let path = opts.config_path()?;
        let file = ConfigFile::load(&path)?;
        let ctx: Option<(String, Context)> = match (&opts.server, &opts.context) {
            (_, Some(name)) => file.context(Some(name)).map(|(n, c)| (n.to_owned(), c.clone())),
            (Some(server), None) => {
                file.context_for_server(server).map(|(n, c)| (n.to_owned(), c.clone()))
            }
            (None, None) => file.context(None).map(|(n, c)| (n.to_owned(), c.clone())),
        };
        let server = match (&opts.server, &ctx) {
            (Some(s), _) => s.clone(),
            (None, Some((_, c))) => c.server.clone(),
            (None, None) => return Err(ClientError::NoServer),
        };
        let ca = opts.ca_cert.clone().or_else(|| ctx.as_ref().and_then(|(_, c)| c.ca_cert.clone()));
        let client = Self::anonymous(&server, opts.verbose, ca.as_deref())?;
        {
            let mut s = client.session();
            if let Some(t) = &opts.token {
                s.access = Some(t.clone());
            } else if let Some((name, c)) = ctx {
                s.access = c.access_token;
                s.refresh = c.refresh_token;
                s.expires_at = c.expires_at;
                s.persist = Some((path, name));
            }
            if s.access.is_none() && s.refresh.is_none() {
                return Err(ClientError::NotLoggedIn(client.base.clone()));
            }
        }
        Ok(client)
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.base
    }

    /// The TLS trust for `wss://` (the HTTP client's).
    pub(crate) fn tls(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.tls)
    }

    /// The access token in use (for the websocket `connection_init`), refreshed first when it
    /// has expired.
    ///
    /// # Errors
    ///
    /// A failed refresh.
    pub async fn access_token(&self) -> Result<Option<String>, ClientError> {
        self.refresh_if_expired().await?;
        Ok(self.session().access.clone())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn refresh_if_expired(&self) -> Result<(), ClientError> {
        let due = {
            let s = self.session();
            s.refresh.is_some()
                && (s.access.is_none()
                    || s.expires_at
                        .is_some_and(|t| t <= Utc::now() + chrono::Duration::seconds(10)))
        };
        if due {
            self.refresh().await?;
        }
        Ok(())
    }

    /// Exchanges the stored refresh token for a new pair and saves it to the context.
    async fn refresh(&self) -> Result<bool, ClientError> {
        let Some(rt) = self.session().refresh.clone() else {
            return Ok(false);
        };
        let resp = self
            .http
            .post(self.url("/api/v1/auth/refresh"))
            .json(&serde_json::json!({ "refreshToken": rt }))
            .send()
            .await
            .map_err(|source| self.connect_error(source))?;
        if !resp.status().is_success() {
            let mut s = self.session();
            s.refresh = None;
            return Err(ClientError::Api {
                status: 401,
                code: "unauthenticated".into(),
                message: format!(
                    "the session for {} has expired: run `berth login` again",
                    self.base
                ),
                details: Value::Null,
            });
        }
        let pair: TokenPair = decode(resp, "POST /api/v1/auth/refresh").await?;
        let persist = {
            let mut s = self.session();
            s.access = Some(pair.access_token.clone());
            s.refresh = Some(pair.refresh_token.clone());
            s.expires_at = Some(expiry(pair.expires_in));
            s.persist.clone()
        };
        if let Some((path, name)) = persist {
            let mut file = ConfigFile::load(&path)?;
            if let Some(c) = file.contexts.get_mut(&name) {
                c.access_token = Some(pair.access_token);
                c.refresh_token = Some(pair.refresh_token);
                c.expires_at = Some(expiry(pair.expires_in));
                file.save(&path)?;
            }
        }
        Ok(true)
    }

    fn connect_error(&self, source: reqwest::Error) -> ClientError {
        ClientError::Connect { server: self.base.clone(), source }
    }

    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: &Body,
    ) -> Result<reqwest::Response, ClientError> {
        let mut req = self.http.request(method.clone(), self.url(path));
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(t) = self.session().access.clone() {
            req = req.bearer_auth(t);
        }
        req = match body {
            Body::Empty => req,
            Body::Json(v) => req.json(v),
        };
        req.send().await.map_err(|source| self.connect_error(source))
    }

    /// Sends a request and answers the response when its status is a success; refreshes the
    /// session and retries once on 401.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] for an error status, [`ClientError::Connect`] when unreachable.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
    ) -> Result<reqwest::Response, ClientError> {
        self.refresh_if_expired().await?;
        let mut resp = self.send_once(&method, path, query, &body).await?;
        if resp.status() == StatusCode::UNAUTHORIZED && self.refresh().await? {
            resp = self.send_once(&method, path, query, &body).await?;
        }
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.api_error(resp).await)
    }

    async fn api_error(&self, resp: reqwest::Response) -> ClientError {
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap_or_default();
        let e = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => ClientError::Api {
                status: status.as_u16(),
                code: b.code,
                message: b.message,
                details: b.details,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: status.canonical_reason().unwrap_or("error").to_lowercase(),
                message: format!("the server answered {status}"),
                details: Value::Null,
            },
        };
        if let ClientError::Api { status: 401, .. } = &e
            && self.session().persist.is_none()
            && self.session().access.is_some()
        {
            return ClientError::Api {
                status: 401,
                code: "unauthenticated".into(),
                message: "the token was refused: it is wrong, expired or revoked".into(),
                details: Value::Null,
            };
        }
        if self.verbose
            && let ClientError::Api { status, code, details, .. } = &e
        {
            eprintln!("server answered {status} {code}: {details}");
        }
        e
    }

    /// Sends a request and decodes the JSON answer.
    ///
    /// # Errors
    ///
    /// As [`Client::send`], and [`ClientError::Decode`].
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
    ) -> Result<T, ClientError> {
        let what = format!("{method} {path}");
        let resp = self.send(method, path, query, body).await?;
        decode(resp, &what).await
    }

    /// `GET` and decode.
    ///
    /// # Errors
    ///
    /// As [`Client::json`].
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.json(Method::GET, path, query, Body::Empty).await
    }

    /// Logs in with a password and answers the token pair.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] (401 for a wrong password), [`ClientError::Connect`].
    pub async fn login(&self, username: &str, password: &str) -> Result<TokenPair, ClientError> {
        let body = serde_json::json!({ "username": username, "password": password });
        let resp = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(&body)
            .send()
            .await
            .map_err(|source| self.connect_error(source))?;
        if !resp.status().is_success() {
            let e = self.api_error(resp).await;
            return Err(match e {
                ClientError::Api { status: 401, code, details, .. } => ClientError::Api {
                    status: 401,
                    code,
                    message: "login failed: wrong user name or password".into(),
                    details,
                },
                e => e,
            });
        }
        decode(resp, "POST /api/v1/auth/login").await
    }
}

/// When a token that lasts `secs` from now expires.
pub fn expiry(secs: u64) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2))
}

async fn decode<T: DeserializeOwned>(
    resp: reqwest::Response,
    what: &str,
) -> Result<T, ClientError> {
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| ClientError::Decode { what: what.to_owned(), source: Box::new(e) })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Decode { what: what.to_owned(), source: Box::new(e) })
}

/// Percent-encodes one URL path segment.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A single-threaded Tokio runtime for one command.
///
/// # Errors
///
/// The I/O error from building it.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(seg("web-1"), "web-1");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn connecting_without_any_server_says_how_to_name_one() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ClientOpts { config: Some(dir.path().join("c.yaml")), ..Default::default() };
        let e = Client::connect(&opts).unwrap_err();
        assert!(matches!(e, ClientError::NoServer), "{e}");
    }

    #[test]
    fn a_server_without_a_token_is_not_logged_in() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ClientOpts {
            server: Some("127.0.0.1:1".into()),
            config: Some(dir.path().join("c.yaml")),
            ..Default::default()
        };
        let e = Client::connect(&opts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not logged in to http://127.0.0.1:1: run `berth login --server http://127.0.0.1:1` or set BERTH_TOKEN"
        );
    }
}
