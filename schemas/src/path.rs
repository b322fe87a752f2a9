//! Field paths such as `spec.ports[1].hostPort`, used by validation and manifest errors.

use std::fmt;

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A named field (`spec`, `hostPort`) or a map key (`labels.app`).
    Field(String),
    /// A position in a list (`[1]`).
    Index(usize),
}

/// A path to a field inside a resource, printed the way kubectl prints them:
/// `spec.ports[1].hostPort`. The empty path is the document itself and prints as `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

impl FieldPath {
    /// The path of the document itself.
    pub fn root() -> Self {
        Self::default()
    }

    /// Builds a path from a dotted string of plain field names (`spec.image`); `[n]` parts
    /// become list indexes (`spec.ports[1].hostPort`).
    pub fn parse(s: &str) -> Self {
        let mut path = Self::root();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                path.segments.push(Segment::Field(name.to_owned()));
            }
            while let Some(end) = rest.find(']') {
                if let Ok(i) = rest[1..end].parse() {
                    path.segments.push(Segment::Index(i));
                }
                rest = &rest[end + 1..];
            }
        }
        path
    }

    /// This path extended by a field name.
    #[must_use]
    pub fn field(&self, name: impl Into<String>) -> Self {
        let mut p = self.clone();
        p.segments.push(Segment::Field(name.into()));
        p
    }

    /// This path extended by a list index.
    #[must_use]
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.segments.push(Segment::Index(i));
        p
    }

    /// The steps of the path, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether this is the path of the document itself.
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// This path without its last step (the root stays the root).
    #[must_use]
    pub fn parent(&self) -> Self {
        let mut p = self.clone();
        p.segments.pop();
        p
    }

    /// The rest of this path after `prefix`, when it starts with `prefix`.
    pub fn strip_prefix(&self, prefix: &FieldPath) -> Option<FieldPath> {
        self.segments
            .strip_prefix(prefix.segments.as_slice())
            .map(|rest| FieldPath { segments: rest.to_vec() })
    }

    /// Appends the steps of `other` to this path.
    #[must_use]
    pub fn join(&self, other: &FieldPath) -> Self {
        let mut p = self.clone();
        p.segments.extend(other.segments.iter().cloned());
        p
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str(".");
        }
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Field(name) => {
                    let plain = !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    match (plain, i) {
                        (true, 0) => f.write_str(name)?,
                        (true, _) => write!(f, ".{name}")?,
                        (false, _) => write!(f, "[{name:?}]")?,
                    }
                }
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl From<&str> for FieldPath {
    fn from(s: &str) -> Self {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_kubectl() {
        let p = FieldPath::root().field("spec").field("ports").index(1).field("hostPort");
        assert_eq!(p.to_string(), "spec.ports[1].hostPort");
    }

    #[test]
    fn map_keys_with_dots_are_quoted() {
        let p = FieldPath::root().field("metadata").field("labels").field("app.kubernetes.io/name");
        assert_eq!(p.to_string(), "metadata.labels[\"app.kubernetes.io/name\"]");
    }

    #[test]
    fn parse_reads_back_what_display_prints_for_plain_paths() {
        let p = FieldPath::parse("spec.ports[1].hostPort");
        assert_eq!(p, FieldPath::root().field("spec").field("ports").index(1).field("hostPort"));
        assert_eq!(FieldPath::root().to_string(), ".");
    }
}
