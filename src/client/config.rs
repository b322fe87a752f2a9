//! The contexts file: where `berth login` keeps the server URL and tokens (0600, under
//! `$XDG_CONFIG_HOME/berth/config.yaml` or `~/.config/berth/config.yaml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Errors reading or writing the contexts file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither `XDG_CONFIG_HOME` nor `HOME` is set, so there is no place for the file.
    #[error("cannot find the config directory: set XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
    /// The file exists but cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a contexts file.
    #[error("{path} is not a valid berth config file")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The file cannot be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One server and the credentials for it.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    /// The server's base URL (`http://127.0.0.1:7480`).
    pub server: String,
    /// Who logged in, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The access token (a JWT) or an API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// The refresh token, exchanged for a new pair when the access token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// A PEM file of CA certificates trusted for this server (besides the public roots), from
    /// `berth login --ca-cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .field("ca_cert", &self.ca_cert)
            .finish_non_exhaustive()
    }
}

/// The whole file: named contexts and the one in use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigFile {
    /// The context used when `--context` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// The default path of the contexts file.
///
/// # Errors
///
/// [`ConfigError::NoConfigDir`] when neither `XDG_CONFIG_HOME` nor `HOME` is set.
pub fn default_path() -> Result<PathBuf, ConfigError> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".config"),
            None => return Err(ConfigError::NoConfigDir),
        },
    };
    Ok(base.join("berth").join("config.yaml"))
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty config.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(s) if s.trim().is_empty() => Ok(Self::default()),
            Ok(s) => serde_saphyr::from_str(&s).map_err(|source| ConfigError::Parse {
                path: path.to_owned(),
                source: Box::new(source),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { path: path.to_owned(), source }),
        }
    }

    /// Writes the file with mode 0600 (the directory 0700), replacing it atomically.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Write`].
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let err = |source| ConfigError::Write { path: path.to_owned(), source };
        let text =
            serde_saphyr::to_string(self).map_err(|e| err(std::io::Error::other(e.to_string())))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
            set_mode(dir, 0o700).map_err(err)?;
        }
        let tmp = path.with_extension("yaml.tmp");
        write_private(&tmp, text.as_bytes()).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)?;
        Ok(())
    }

    /// The context named `name`, else the current one.
    pub fn context(&self, name: Option<&str>) -> Option<(&str, &Context)> {
        let name = name.or(self.current_context.as_deref())?;
        self.contexts.get_key_value(name).map(|(k, v)| (k.as_str(), v))
    }

    /// The first context for `server` (the current one if it matches).
    pub fn context_for_server(&self, server: &str) -> Option<(&str, &Context)> {
        let norm = normalize_server(server);
        if let Some((n, c)) = self.context(None)
            && normalize_server(&c.server) == norm
        {
            return Some((n, c));
        }
        self.contexts
            .iter()
            .find(|(_, c)| normalize_server(&c.server) == norm)
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// A server URL without a trailing slash, with `http://` added when no scheme is given.
pub fn normalize_server(s: &str) -> String {
    let s = s.trim().trim_end_matches('/');
    if s.contains("://") { s.to_owned() } else { format!("http://{s}") }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_config_reads_back_the_same_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth").join("config.yaml");
        let mut c = ConfigFile { current_context: Some("default".into()), ..Default::default() };
        c.contexts.insert(
            "default".into(),
            Context {
                server: "http://127.0.0.1:7480".into(),
                access_token: Some("a".into()),
                refresh_token: Some("r".into()),
                ..Default::default()
            },
        );
        c.save(&path).unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap(), c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_missing_config_file_is_an_empty_config() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ConfigFile::load(&dir.path().join("nope.yaml")).unwrap(), ConfigFile::default());
    }

    #[test]
    fn servers_match_without_trailing_slash_or_scheme() {
        assert_eq!(normalize_server("127.0.0.1:7480/"), "http://127.0.0.1:7480");
        assert_eq!(normalize_server("https://b.example/"), "https://b.example");
    }
}
