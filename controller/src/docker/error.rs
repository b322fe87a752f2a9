//! The driver's error type, classified for the retry policy.

/// A boxed cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong talking to the Docker Engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// No Engine answers at `host` (socket missing, connection refused, reset, or no answer in
    /// time). berth keeps running, reports not ready and retries with backoff.
    #[error("Docker Engine at {host} is unreachable")]
    EngineUnreachable {
        /// The `DOCKER_HOST`-style address tried.
        host: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// An operation took longer than the driver allows for it.
    #[error("Docker Engine did not finish {operation} within {seconds}s")]
    Timeout {
        /// What was being done (`stop container web`).
        operation: String,
        /// The limit.
        seconds: u64,
    },
    /// The container or image does not exist.
    #[error("{what} not found")]
    NotFound {
        /// `container berth_default_web`, `image nginx:1.27`.
        what: String,
    },
    /// A container with that name already exists (it may or may not be berth's).
    #[error("a container named {name:?} already exists")]
    NameInUse {
        /// The wanted name.
        name: String,
    },
    /// The Engine refused the change because of the object's state (image in use by a
    /// container, removal already in progress, ...).
    #[error("Docker Engine refused: {message}")]
    Conflict {
        /// Docker's message.
        message: String,
    },
    /// The Engine rejected the request as malformed or unsupported (bad port, unknown
    /// capability, missing image at create ...).
    #[error("Docker Engine rejected the request: {message}")]
    Rejected {
        /// Docker's message.
        message: String,
    },
    /// The registry refused the credentials given, or demanded some and none were given.
    #[error("registry refused access to {image}: {message}")]
    RegistryAuth {
        /// The image reference being pulled.
        image: String,
        /// The registry's message as relayed by Docker.
        message: String,
    },
    /// The registry has no such repository, tag or digest.
    #[error("image {image} not found in its registry: {message}")]
    ImageNotFound {
        /// The image reference being pulled.
        image: String,
        /// The registry's message as relayed by Docker.
        message: String,
    },
    /// A pull failed for another reason (registry unreachable, interrupted download ...).
    #[error("pulling {image} failed: {message}")]
    Pull {
        /// The image reference being pulled.
        image: String,
        /// Docker's message.
        message: String,
    },
    /// An image reference did not parse.
    #[error("invalid image reference {reference:?}")]
    InvalidReference {
        /// The reference as given.
        reference: String,
        /// Why.
        #[source]
        source: berth_schemas::ReferenceError,
    },
    /// The Engine failed internally (HTTP 5xx without a more specific meaning).
    #[error("Docker Engine error (HTTP {status}): {message}")]
    Engine {
        /// The HTTP status.
        status: u16,
        /// Docker's message.
        message: String,
    },
    /// The Engine's answer could not be read (unexpected JSON, broken stream).
    #[error("unexpected answer from the Docker Engine")]
    Protocol {
        /// The decoding or transport error.
        #[source]
        source: BoxError,
    },
    /// The connection settings are unusable (unsupported `DOCKER_HOST` scheme, TLS files
    /// missing or invalid).
    #[error("cannot connect to the Docker Engine at {host} as configured")]
    Config {
        /// The address.
        host: String,
        /// What is wrong.
        #[source]
        source: BoxError,
    },
    /// A test double was told to fail this call (only [`super::fake::FakeDriver`] returns it).
    #[error("injected failure: {message}")]
    Injected {
        /// The message given to the fake.
        message: String,
        /// Whether it should count as transient.
        transient: bool,
    },
}

impl DriverError {
    /// Whether retrying the same call later may succeed without anyone changing anything:
    /// the Engine or a registry was unreachable, busy or slow.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::EngineUnreachable { .. }
            | Self::Timeout { .. }
            | Self::Engine { .. }
            | Self::Pull { .. }
            | Self::Protocol { .. } => true,
            Self::Injected { transient, .. } => *transient,
            Self::NotFound { .. }
            | Self::NameInUse { .. }
            | Self::Conflict { .. }
            | Self::Rejected { .. }
            | Self::RegistryAuth { .. }
            | Self::ImageNotFound { .. }
            | Self::InvalidReference { .. }
            | Self::Config { .. } => false,
        }
    }

    /// Whether this says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Whether this says the Engine could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::EngineUnreachable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_engine_is_transient_and_names_the_host() {
        let e = DriverError::EngineUnreachable {
            host: "unix:///nowhere.sock".into(),
            source: "connection refused".into(),
        };
        assert!(e.is_transient());
        assert!(e.is_unreachable());
        assert_eq!(e.to_string(), "Docker Engine at unix:///nowhere.sock is unreachable");
    }

    #[test]
    fn wrong_credentials_are_not_transient() {
        let e = DriverError::RegistryAuth { image: "r/a:1".into(), message: "unauthorized".into() };
        assert!(!e.is_transient());
    }
}
