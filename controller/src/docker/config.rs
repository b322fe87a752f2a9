//! How to reach the Docker Engine, read the way the docker CLI reads it.
//!
//! - `DOCKER_HOST`: `unix:///path` or `tcp://host:port` (`http://` is accepted as `tcp://`);
//!   `unix:///var/run/docker.sock` when unset or empty.
//! - `DOCKER_TLS_VERIFY`: when set to anything but the empty string, a `tcp://` host is reached
//!   over TLS, verifying the Engine's certificate against `ca.pem` and presenting
//!   `cert.pem`/`key.pem`.
//! - `DOCKER_CERT_PATH`: the directory holding those files; `~/.docker` when unset.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The default Engine address.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// TLS client settings (`DOCKER_TLS_VERIFY` + `DOCKER_CERT_PATH`).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Directory with `ca.pem`, `cert.pem` and `key.pem`.
    pub cert_path: PathBuf,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").field("cert_path", &self.cert_path).finish()
    }
}

/// Connection settings for [`BollardDriver`](super::BollardDriver).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// `unix:///var/run/docker.sock`, `tcp://127.0.0.1:2376`, ...
    pub host: String,
    /// TLS for a `tcp://` host; ignored for `unix://`.
    pub tls: Option<TlsConfig>,
    /// Limit on an ordinary call (list, inspect, create, start, remove ...). Stop gets its grace
    /// period on top; pulls and event streams are not limited (their progress is visible).
    pub request_timeout: Duration,
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            host: DEFAULT_DOCKER_HOST.to_owned(),
            tls: None,
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl DockerConfig {
    /// The settings the docker CLI would use in this process's environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// The settings the docker CLI would use given these environment variables (`lookup`
    /// returns a variable's value), for callers and tests that do not want the process
    /// environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let host = lookup("DOCKER_HOST")
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned());
        let tls = lookup("DOCKER_TLS_VERIFY").filter(|v| !v.is_empty()).map(|_| {
            let cert_path = lookup("DOCKER_CERT_PATH")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .or_else(|| lookup("HOME").map(|h| PathBuf::from(h).join(".docker")))
                .unwrap_or_else(|| PathBuf::from(".docker"));
            TlsConfig { cert_path }
        });
        Self { host, tls, ..Self::default() }
    }

    /// The same settings with another host (`berth serve --docker-host URL`); TLS settings
    /// stay as they were.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Whether the connection will use TLS (a `tcp://` or `https://` host with TLS settings).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some() && !self.host.starts_with("unix://")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn no_environment_means_the_local_socket_without_tls() {
        let c = DockerConfig::from_lookup(env(&[]));
        assert_eq!(c.host, DEFAULT_DOCKER_HOST);
        assert_eq!(c.tls, None);
        assert!(!c.uses_tls());
    }

    #[test]
    fn tls_verify_uses_the_cert_path() {
        let c = DockerConfig::from_lookup(env(&[
            ("DOCKER_HOST", "tcp://127.0.0.1:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", "/certs"),
        ]));
        assert_eq!(c.host, "tcp://127.0.0.1:2376");
        assert_eq!(c.tls, Some(TlsConfig { cert_path: PathBuf::from("/certs") }));
        assert!(c.uses_tls());
    }

    #[test]
    fn tls_verify_without_cert_path_looks_in_the_home_directory() {
        let c = DockerConfig::from_lookup(env(&[
            ("DOCKER_HOST", "tcp://127.0.0.1:2376"),
            ("DOCKER_TLS_VERIFY", "yes"),
            ("HOME", "/home/u"),
        ]));
        assert_eq!(c.tls, Some(TlsConfig { cert_path: PathBuf::from("/home/u/.docker") }));
    }

    #[test]
    fn an_empty_tls_verify_means_no_tls_as_for_the_docker_cli() {
        let c = DockerConfig::from_lookup(env(&[
            ("DOCKER_HOST", "tcp://127.0.0.1:2375"),
            ("DOCKER_TLS_VERIFY", ""),
        ]));
        assert_eq!(c.tls, None);
    }
}
