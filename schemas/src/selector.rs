//! Label selectors as kubectl takes them: `app=web,tier!=cache,env in (prod,staging),!legacy`.
//!
//! A [`Selector`] is a conjunction of [`Requirement`]s; it matches a label map when every
//! requirement does. Parsing is strict: a malformed selector is an error, never "match all".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a [`Requirement`] compares a label with its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value` or `key==value`: the label is present and equal to the value.
    Equals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the label is present and one of the values.
    In,
    /// `key notin (a,b)`: the label is absent or none of the values.
    NotIn,
    /// `key`: the label is present, with any value.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
}

/// One condition on one label key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    /// The label key (`app`, `example.com/tier`).
    pub key: String,
    /// The comparison.
    pub operator: Operator,
    /// The values compared with (one for `=`/`!=`, none for exists / does not exist).
    pub values: BTreeSet<String>,
}

impl Requirement {
    /// Whether `labels` satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = || self.values.iter().next().map_or("", String::as_str);
        let list = || self.values.iter().map(String::as_str).collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::Equals => write!(f, "{}={}", self.key, first()),
            Operator::NotEquals => write!(f, "{}!={}", self.key, first()),
            Operator::In => write!(f, "{} in ({})", self.key, list()),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, list()),
            Operator::Exists => f.write_str(&self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

/// A conjunction of label requirements. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

/// Why a selector string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Something other than what the grammar allows was found at a character offset.
    #[error("invalid label selector at offset {offset}: {message}")]
    Syntax {
        /// Character offset (0-based) into the selector string.
        offset: usize,
        /// What was expected or found.
        message: String,
    },
    /// A label key does not follow the label key rules.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The key as written.
        key: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A label value does not follow the label value rules.
    #[error("invalid label value {value:?}: {reason}")]
    InvalidValue {
        /// The value as written.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

impl Selector {
    /// The selector that matches every label set.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Builds a selector from requirements.
    pub fn from_requirements(requirements: Vec<Requirement>) -> Self {
        Self { requirements }
    }

    /// The requirements, in the order they were written.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether this selector matches every label set.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every requirement matches `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Parses a selector in kubectl syntax. Blank input is the selector that matches everything.
    ///
    /// # Errors
    ///
    /// [`SelectorError`] naming the offset of a syntax error, or the key or value that breaks
    /// the label rules.
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        Parser { chars: input.chars().collect(), pos: 0 }.parse()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn parse(mut self) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        self.skip_ws();
        if self.at_end() {
            return Ok(Selector::everything());
        }
        loop {
            requirements.push(self.requirement()?);
            self.skip_ws();
            match self.peek() {
                None => break,
                Some(',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(c) => return Err(self.syntax(format!("expected ',' or end, found {c:?}"))),
            }
        }
        Ok(Selector { requirements })
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Some('!') {
            self.pos += 1;
            self.skip_ws();
            let key = self.key()?;
            return Ok(Requirement {
                key,
                operator: Operator::DoesNotExist,
                values: BTreeSet::new(),
            });
        }
        let key = self.key()?;
        let had_ws = self.skip_ws();
        let (operator, values) = match (self.peek(), self.peek_at(1)) {
            (None | Some(','), _) => (Operator::Exists, BTreeSet::new()),
            (Some('='), Some('=')) => {
                self.pos += 2;
                (Operator::Equals, self.single_value()?)
            }
            (Some('='), _) => {
                self.pos += 1;
                (Operator::Equals, self.single_value()?)
            }
            (Some('!'), Some('=')) => {
                self.pos += 2;
                (Operator::NotEquals, self.single_value()?)
            }
            _ if had_ws && self.word_ahead("notin") => {
                self.pos += "notin".len();
                (Operator::NotIn, self.value_set()?)
            }
            _ if had_ws && self.word_ahead("in") => {
                self.pos += "in".len();
                (Operator::In, self.value_set()?)
            }
            (Some(c), _) => {
                return Err(self.syntax(format!(
                    "expected one of '=', '==', '!=', 'in', 'notin', ',' after key {key:?}, found {c:?}"
                )));
            }
        };
        Ok(Requirement { key, operator, values })
    }

    fn single_value(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_ws();
        let value = self.value();
        check_value(&value)?;
        Ok(BTreeSet::from([value]))
    }

    fn value_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_ws();
        if self.peek() != Some('(') {
            return Err(self.syntax("expected '(' to open a value list".into()));
        }
        self.pos += 1;
        let mut values = BTreeSet::new();
        loop {
            self.skip_ws();
            let value = self.value();
            check_value(&value)?;
            values.insert(value);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    break;
                }
                Some(c) => return Err(self.syntax(format!("expected ',' or ')', found {c:?}"))),
                None => return Err(self.syntax("unclosed '(' in value list".into())),
            }
        }
        Ok(values)
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        let start = self.pos;
        while self.peek().is_some_and(is_word_char) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.syntax(match self.peek() {
                Some(c) => format!("expected a label key, found {c:?}"),
                None => "expected a label key, found the end".into(),
            }));
        }
        let key: String = self.chars[start..self.pos].iter().collect();
        check_key(&key)?;
        Ok(key)
    }

    fn value(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_word_char) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// Whether the keyword `word` starts here and is followed by whitespace or `(`.
    fn word_ahead(&self, word: &str) -> bool {
        let n = word.chars().count();
        let matches = word.chars().enumerate().all(|(i, c)| self.peek_at(i) == Some(c));
        matches && matches!(self.peek_at(n), Some('(') | Some(' ') | Some('\t'))
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn syntax(&self, message: String) -> SelectorError {
        SelectorError::Syntax { offset: self.pos, message }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

/// Label names and values: at most 63 characters of `[A-Za-z0-9._-]`, starting and ending
/// with an alphanumeric character.
fn check_name(s: &str) -> Result<(), &'static str> {
    if s.len() > 63 {
        return Err("must be at most 63 characters");
    }
    if !s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err("may contain only letters, digits, '-', '_' and '.'");
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(s.chars().next()) || !alnum(s.chars().last()) {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), SelectorError> {
    let invalid = |reason| SelectorError::InvalidKey { key: key.to_owned(), reason };
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 {
                return Err(invalid("prefix must be 1 to 253 characters"));
            }
            let dns = prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
            if !dns {
                return Err(invalid("prefix must be a DNS subdomain"));
            }
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err(invalid("name part must not be empty"));
    }
    check_name(name).map_err(invalid)
}

fn check_value(value: &str) -> Result<(), SelectorError> {
    if value.is_empty() {
        return Ok(());
    }
    check_name(value)
        .map_err(|reason| SelectorError::InvalidValue { value: value.to_owned(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn blank_selector_matches_everything() {
        assert!(sel("").matches(&labels(&[])));
        assert!(sel("   ").matches(&labels(&[("a", "b")])));
        assert!(sel("  ").is_everything());
    }

    #[test]
    fn equality_in_both_spellings_requires_the_label_with_that_value() {
        for s in ["app=web", "app==web", "app = web"] {
            let s = sel(s);
            assert!(s.matches(&labels(&[("app", "web")])));
            assert!(!s.matches(&labels(&[("app", "db")])));
            assert!(!s.matches(&labels(&[])));
        }
    }

    #[test]
    fn inequality_matches_a_missing_label() {
        let s = sel("app!=web");
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("app", "db")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn set_membership_follows_kubectl() {
        let s = sel("env in (prod, staging)");
        assert!(s.matches(&labels(&[("env", "prod")])));
        assert!(s.matches(&labels(&[("env", "staging")])));
        assert!(!s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[])));

        let s = sel("env notin (dev)");
        assert!(s.matches(&labels(&[("env", "prod")])));
        assert!(s.matches(&labels(&[])));
        assert!(!s.matches(&labels(&[("env", "dev")])));
    }

    #[test]
    fn bare_key_means_exists_and_bang_means_absent() {
        assert!(sel("tier").matches(&labels(&[("tier", "")])));
        assert!(!sel("tier").matches(&labels(&[])));
        assert!(sel("!tier").matches(&labels(&[])));
        assert!(!sel("! tier").matches(&labels(&[("tier", "x")])));
    }

    #[test]
    fn comma_joined_requirements_must_all_match() {
        let s = sel("app=web,env in (prod,staging),!legacy,tier");
        assert_eq!(s.requirements().len(), 4);
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod"), ("tier", "fe")])));
        assert!(!s.matches(&labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("tier", "fe"),
            ("legacy", "1")
        ])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod")])));
    }

    #[test]
    fn prefixed_keys_and_empty_values_are_accepted() {
        let s = sel("example.com/tier=,berth.dev/managed");
        assert!(s.matches(&labels(&[("example.com/tier", ""), ("berth.dev/managed", "yes")])));
    }

    #[test]
    fn keys_named_like_operators_still_parse() {
        let s = sel("in=1,notin");
        assert!(s.matches(&labels(&[("in", "1"), ("notin", "x")])));
    }

    #[test]
    fn display_round_trips_through_parse() {
        for s in
            ["app=web", "a!=b", "env in (prod,staging)", "env notin (dev)", "x", "!y", "a=b,!c"]
        {
            let parsed = sel(s);
            assert_eq!(sel(&parsed.to_string()), parsed, "{s}");
        }
    }

    #[test]
    fn malformed_selectors_are_refused_with_their_offset() {
        for (input, offset) in [
            ("app=", None),
            ("=web", Some(0)),
            ("a=b,", Some(4)),
            ("a in (x", Some(7)),
            ("a in x", Some(5)),
            ("a b", Some(2)),
            ("a=b c", Some(4)),
            ("a ~ b", Some(2)),
        ] {
            match (Selector::parse(input), offset) {
                (Ok(s), None) => assert!(s.matches(&labels(&[("app", "")])), "{input}"),
                (Err(SelectorError::Syntax { offset: got, .. }), Some(want)) => {
                    assert_eq!(got, want, "{input}");
                }
                (other, _) => panic!("{input:?}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn keys_and_values_breaking_label_rules_are_refused() {
        assert!(matches!(Selector::parse("-a=b"), Err(SelectorError::InvalidKey { .. })));
        assert!(matches!(Selector::parse("a=b-"), Err(SelectorError::InvalidValue { .. })));
        assert!(matches!(Selector::parse("Bad_Prefix/x=y"), Err(SelectorError::InvalidKey { .. })));
        let long = format!("a={}", "v".repeat(64));
        assert!(matches!(Selector::parse(&long), Err(SelectorError::InvalidValue { .. })));
    }

    #[test]
    fn selectors_serialize_as_their_string_form() {
        let s = sel("app=web,!legacy");
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert_eq!(json, "\"app=web,!legacy\"");
        let back: Selector = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, s);
    }
}
