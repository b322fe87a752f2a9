//! Registry credentials from a docker-style `config.json`, looked up by an image's registry.
//!
//! The file is the one `docker login` writes: `{"auths": {"<registry>": {"auth":
//! "<base64 user:password>"}}}`, or with `username` and `password` fields instead of `auth`.
//! Registry keys are compared as the docker CLI compares them: scheme and path are dropped
//! (`https://registry.example.com/v1/` is `registry.example.com`), and Docker Hub's aliases
//! (`https://index.docker.io/v1/`, `index.docker.io`, `registry-1.docker.io`, `docker.io`) are one
//! registry. Credential helpers (`credsStore`, `credHelpers`) are not run; entries that only
//! point at them are ignored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use berth_schemas::ImageReference;
use serde::Deserialize;

use super::types::RegistryCredentials;

/// The key `docker login` uses for Docker Hub.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// Why credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a docker `config.json`.
    #[error("{path} is not a docker config.json")]
    Parse {
        /// The file (`<inline>` for in-memory data).
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// An entry's `auth` field is not base64 of `user:password`.
    #[error("the credentials for {registry} in {path} are malformed: {reason}")]
    BadAuth {
        /// The file.
        path: PathBuf,
        /// The registry key of the entry.
        registry: String,
        /// What is wrong (never the secret itself).
        reason: &'static str,
    },
}

impl CredentialsError {
    /// Always `false`: a bad file stays bad until someone edits it.
    pub fn is_transient(&self) -> bool {
        false
    }
}

#[derive(Debug, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Credentials per registry, read from a docker `config.json`.
#[derive(Clone, Default)]
pub struct CredentialStore {
    /// Normalized registry host → credentials.
    by_host: HashMap<String, RegistryCredentials>,
}

impl std::fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut hosts: Vec<&String> = self.by_host.keys().collect();
        hosts.sort();
        f.debug_struct("CredentialStore").field("registries", &hosts).finish()
    }
}

impl CredentialStore {
    /// No credentials at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Reads a `config.json` (blocking file I/O: call it at start-up or in `spawn_blocking`).
    ///
    /// # Errors
    ///
    /// [`CredentialsError`] when the file cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let bytes = std::fs::read(path)
            .map_err(|source| CredentialsError::Read { path: path.to_owned(), source })?;
        Self::parse(&bytes, path)
    }

    /// Parses `config.json` content; `origin` names it in errors.
    ///
    /// # Errors
    ///
    /// [`CredentialsError::Parse`] or [`CredentialsError::BadAuth`].
    pub fn parse(json: &[u8], origin: &Path) -> Result<Self, CredentialsError> {
        let file: ConfigFile = serde_json::from_slice(json)
            .map_err(|source| CredentialsError::Parse { path: origin.to_owned(), source })?;
        let mut by_host = HashMap::new();
        for (key, entry) in file.auths {
            let bad = |reason| CredentialsError::BadAuth {
                path: origin.to_owned(),
                registry: key.clone(),
                reason,
            };
            let (username, password) = match entry.auth.as_deref().filter(|a| !a.is_empty()) {
                Some(auth) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| bad("`auth` is not base64"))?;
                    let text = String::from_utf8(decoded)
                        .map_err(|_| bad("`auth` does not decode to UTF-8"))?;
                    let (u, p) =
                        text.split_once(':').ok_or_else(|| bad("`auth` is not `user:password`"))?;
                    (u.to_owned(), p.to_owned())
                }
                None => match (entry.username, entry.password) {
                    (Some(u), Some(p)) if !u.is_empty() => (u, p),
                    // Only a helper or an identity token: nothing berth can use.
                    _ => continue,
                },
            };
            by_host.insert(
                normalize_registry(&key),
                RegistryCredentials { username, password, server_address: key.clone() },
            );
        }
        Ok(Self { by_host })
    }

    /// The credentials for a registry host (`127.0.0.1:5000`, `docker.io`), if any.
    pub fn for_registry(&self, registry: &str) -> Option<RegistryCredentials> {
        self.by_host.get(&normalize_registry(registry)).cloned()
    }

    /// The credentials for the registry an image reference pulls from (Docker Hub when it
    /// names none).
    pub fn for_reference(&self, reference: &ImageReference) -> Option<RegistryCredentials> {
        self.for_registry(reference.registry_or_default())
    }

    /// Like [`for_reference`](Self::for_reference), parsing the reference first; an
    /// unparsable reference has no credentials.
    pub fn for_image(&self, image: &str) -> Option<RegistryCredentials> {
        ImageReference::parse(image).ok().and_then(|r| self.for_reference(&r))
    }

    /// How many registries it holds credentials for.
    pub fn len(&self) -> usize {
        self.by_host.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }
}

/// A registry key as the docker CLI compares them: without scheme or path, lower-case, with
/// Docker Hub's aliases folded into `docker.io`.
pub fn normalize_registry(key: &str) -> String {
    let key = key.trim();
    let without_scheme =
        key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn store(json: &str) -> CredentialStore {
        match CredentialStore::parse(json.as_bytes(), Path::new("<inline>")) {
            Ok(s) => s,
            Err(e) => panic!("parse failed: {e:#?}"),
        }
    }

    #[test]
    fn auth_field_gives_user_and_password_for_the_images_registry() {
        let s = store(&format!(
            r#"{{"auths": {{"127.0.0.1:31501": {{"auth": "{}"}}}}}}"#,
            b64("berth:s3cret:with:colons")
        ));
        let c = s.for_image("127.0.0.1:31501/team/app:1").expect("credentials");
        assert_eq!(c.username, "berth");
        assert_eq!(c.password, "s3cret:with:colons");
        assert_eq!(c.server_address, "127.0.0.1:31501");
        assert!(s.for_image("127.0.0.1:31500/team/app:1").is_none());
    }

    #[test]
    fn docker_hub_key_matches_images_without_a_registry() {
        let s = store(&format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}}}}}"#,
            b64("hubuser:hubpass")
        ));
        for image in ["nginx", "library/nginx:1.27", "docker.io/team/app", "index.docker.io/x/y"] {
            let c = s.for_image(image).unwrap_or_else(|| panic!("no credentials for {image}"));
            assert_eq!(c.username, "hubuser");
            assert_eq!(c.server_address, DOCKER_HUB_SERVER);
        }
        assert!(s.for_image("quay.io/team/app").is_none());
    }

    #[test]
    fn username_and_password_fields_work_without_auth() {
        let s = store(
            r#"{"auths": {"https://registry.example.com/v2/":
                {"username": "u", "password": "p"}}}"#,
        );
        let c = s.for_registry("registry.example.com").expect("credentials");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
    }

    #[test]
    fn helper_only_entries_and_other_fields_are_ignored() {
        let s = store(
            r#"{"auths": {"ghcr.io": {}}, "credsStore": "desktop", "HttpHeaders": {"a": "b"}}"#,
        );
        assert!(s.is_empty());
        assert!(store("{}").is_empty());
    }

    #[test]
    fn malformed_auth_is_an_error_that_does_not_show_the_secret() {
        let json = r#"{"auths": {"r.example": {"auth": "bm9jb2xvbg=="}}}"#; // "nocolon"
        let err = CredentialStore::parse(json.as_bytes(), Path::new("/etc/berth/config.json"))
            .expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("r.example"), "{text}");
        assert!(!text.contains("nocolon"), "{text}");
        assert!(!err.is_transient());
        assert!(matches!(
            CredentialStore::parse(b"[1]", Path::new("x")),
            Err(CredentialsError::Parse { .. })
        ));
    }

    #[test]
    fn registry_keys_are_normalized_like_the_docker_cli() {
        assert_eq!(normalize_registry("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_registry("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(normalize_registry("Registry.Example.com/v2/"), "registry.example.com");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = CredentialStore::load(Path::new("/nonexistent/berth/config.json"))
            .expect_err("must fail");
        assert!(matches!(err, CredentialsError::Read { .. }));
    }
}
