//! Image references (`registry:5000/team/app:v2@sha256:...`), parsed the way Docker's
//! distribution library reads them.

use std::fmt;

/// The registry Docker uses when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A parsed image reference: `[registry[:port]/]path[:tag][@sha256:<64 hex>]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageReference {
    /// The registry host (with port) when the reference names one (`registry.example.com:5000`,
    /// `localhost:5000`).
    pub registry: Option<String>,
    /// The repository path as written (`nginx`, `team/app`).
    pub path: String,
    /// The tag, when given.
    pub tag: Option<String>,
    /// The digest (`sha256:` followed by 64 lower-case hex digits), when given.
    pub digest: Option<String>,
}

/// Why an image reference did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The reference was empty.
    #[error("image reference is empty")]
    Empty,
    /// The reference is longer than 255 characters before the tag.
    #[error("repository name is longer than 255 characters")]
    NameTooLong,
    /// A path component breaks the naming rules.
    #[error(
        "invalid repository path component {0:?}: use lower-case letters, digits and single \
         separators (., _, __ or -), starting and ending with a letter or digit"
    )]
    BadPathComponent(String),
    /// The registry host or port is malformed.
    #[error("invalid registry host {0:?}")]
    BadRegistry(String),
    /// The tag breaks the naming rules.
    #[error(
        "invalid tag {0:?}: use at most 128 letters, digits, '_', '.' or '-', not starting with \
         '.' or '-'"
    )]
    BadTag(String),
    /// The digest is not `sha256:` followed by 64 lower-case hex digits.
    #[error("invalid digest {0:?}: expected sha256: followed by 64 lower-case hex digits")]
    BadDigest(String),
}

fn is_path_component(s: &str) -> bool {
    // alnum+ ( separator alnum+ )*, separator = "." | "_" | "__" | "-"+
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &s[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_domain_component(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

fn is_registry(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        // [IPv6]:port
        match rest.split_once(']') {
            Some((ip, tail)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match tail {
                    "" => return true,
                    t => match t.strip_prefix(':') {
                        Some(p) => ("", Some(p)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return false;
    }
    host.is_empty() && s.starts_with('[') || host.split('.').all(is_domain_component)
}

fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_digest(s: &str) -> bool {
    match s.strip_prefix("sha256:") {
        Some(hex) => {
            hex.len() == 64 && hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        }
        None => false,
    }
}

impl ImageReference {
    /// Parses a reference such as `nginx`, `nginx:1.27`, `postgres@sha256:<64 hex>` or
    /// `localhost:5000/team/app:v2`.
    ///
    /// # Errors
    ///
    /// [`ReferenceError`] saying which part breaks the rules.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !is_digest(d) {
                    return Err(ReferenceError::BadDigest(d.to_owned()));
                }
                (r, Some(d.to_owned()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !is_tag(t) {
                    return Err(ReferenceError::BadTag(t.to_owned()));
                }
                (&rest[..last_slash + i], Some(t.to_owned()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if name.len() > 255 {
            return Err(ReferenceError::NameTooLong);
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.starts_with('[')
                    || first.bytes().any(|c| c.is_ascii_uppercase()) =>
            {
                if !is_registry(first) {
                    return Err(ReferenceError::BadRegistry(first.to_owned()));
                }
                (Some(first.to_owned()), remainder)
            }
            _ => (None, name),
        };
        for component in path.split('/') {
            if !is_path_component(component) {
                return Err(ReferenceError::BadPathComponent(component.to_owned()));
            }
        }
        Ok(ImageReference { registry, path: path.to_owned(), tag, digest })
    }

    /// The registry to pull from: the one named, or `docker.io`.
    pub fn registry_or_default(&self) -> &str {
        self.registry.as_deref().unwrap_or(DEFAULT_REGISTRY)
    }

    /// The repository as Docker lists it (`nginx`, `localhost:5000/team/app`), without tag or
    /// digest.
    pub fn repository(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// The tag to pull when the reference has neither tag nor digest: `latest`.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// The fully qualified form: `docker.io/library/nginx:latest`,
    /// `localhost:5000/team/app:v2@sha256:...`.
    pub fn normalized(&self) -> String {
        let registry = self.registry_or_default();
        let path = if self.registry.is_none() && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.clone()
        };
        let mut out = format!("{registry}/{path}");
        if self.tag.is_some() || self.digest.is_none() {
            out.push(':');
            out.push_str(self.tag_or_latest());
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(d);
        }
        out
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageReference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn common_references_parse_into_their_parts() {
        let r = ImageReference::parse("nginx").unwrap();
        assert_eq!(
            (r.registry.as_deref(), r.path.as_str(), r.tag.as_deref()),
            (None, "nginx", None)
        );
        assert_eq!(r.normalized(), "docker.io/library/nginx:latest");

        let r = ImageReference::parse("localhost:5000/team/app:v2").unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.path, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.to_string(), "localhost:5000/team/app:v2");

        let r = ImageReference::parse(&format!("postgres:16@{DIGEST}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(DIGEST));
        assert_eq!(r.normalized(), format!("docker.io/library/postgres:16@{DIGEST}"));

        let r = ImageReference::parse("registry.example.com/a/b/c").unwrap();
        assert_eq!(r.registry.as_deref(), Some("registry.example.com"));
        let r = ImageReference::parse("[::1]:5000/app").unwrap();
        assert_eq!(r.registry.as_deref(), Some("[::1]:5000"));
    }

    #[test]
    fn malformed_references_say_which_part_is_wrong() {
        assert_eq!(ImageReference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(ImageReference::parse("Nginx"), Err(ReferenceError::BadPathComponent(_))));
        assert!(matches!(
            ImageReference::parse("team/App"),
            Err(ReferenceError::BadPathComponent(_))
        ));
        assert!(matches!(ImageReference::parse("nginx:"), Err(ReferenceError::BadTag(_))));
        assert!(matches!(ImageReference::parse("nginx:-x"), Err(ReferenceError::BadTag(_))));
        assert!(matches!(
            ImageReference::parse("nginx@sha256:abc"),
            Err(ReferenceError::BadDigest(_))
        ));
        assert!(matches!(
            ImageReference::parse(&format!("nginx@{}", DIGEST.to_uppercase())),
            Err(ReferenceError::BadDigest(_))
        ));
        assert!(matches!(ImageReference::parse("a..b"), Err(ReferenceError::BadPathComponent(_))));
        assert!(matches!(
            ImageReference::parse("bad_host.com:port/app"),
            Err(ReferenceError::BadRegistry(_))
        ));
        assert!(matches!(
            ImageReference::parse("team//app"),
            Err(ReferenceError::BadPathComponent(_))
        ));
        assert!(matches!(
            ImageReference::parse(&"a".repeat(256)),
            Err(ReferenceError::NameTooLong)
        ));
    }

    #[test]
    fn separators_follow_the_distribution_grammar() {
        assert!(ImageReference::parse("my_app").is_ok());
        assert!(ImageReference::parse("my__app").is_ok());
        assert!(ImageReference::parse("my---app").is_ok());
        assert!(ImageReference::parse("my.app").is_ok());
        assert!(ImageReference::parse("my___app").is_err());
        assert!(ImageReference::parse("-app").is_err());
    }
}
