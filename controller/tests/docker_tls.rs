//! The bollard driver reaching a Docker Engine over TLS, configured the docker CLI's way
//! (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`). `scripts/test-env up` runs a second,
//! TLS-only Engine for this; the tests fail (they do not skip) when it is missing.

mod support;

use std::collections::HashMap;

use berth_controller::docker::{BollardDriver, ContainerFilter, DockerConfig, Driver, DriverError};
use support::{TestEnv, within};

fn cli_environment(env: &TestEnv, cert_path: &str) -> DockerConfig {
    let vars: HashMap<&str, String> = HashMap::from([
        ("DOCKER_HOST", env.tls_docker_host.clone()),
        ("DOCKER_TLS_VERIFY", "1".to_owned()),
        ("DOCKER_CERT_PATH", cert_path.to_owned()),
    ]);
    DockerConfig::from_lookup(|k| vars.get(k).cloned())
}

#[tokio::test]
async fn the_engine_is_reached_over_tls_with_the_docker_cli_variables() {
    let env = TestEnv::load();
    let config = cli_environment(&env, &env.tls_cert_path);
    assert!(config.uses_tls());
    let driver = match within(30, "a TLS connection", BollardDriver::connect(&config)).await {
        Ok(d) => d,
        Err(e) => panic!(
            "no TLS Engine at {}: {e} ({:?}); run `scripts/test-env up`",
            env.tls_docker_host,
            std::error::Error::source(&e).map(ToString::to_string)
        ),
    };
    let version = within(30, "GET /version over TLS", driver.version()).await.expect("version");
    assert!(!version.api_version.is_empty());
    within(30, "a list over TLS", driver.list_containers(&ContainerFilter::managed()))
        .await
        .expect("list");
}

#[tokio::test]
async fn a_cert_path_without_the_client_key_is_a_configuration_error() {
    let env = TestEnv::load();
    let dir = tempfile::tempdir().expect("tempdir");
    for file in ["ca.pem", "cert.pem"] {
        std::fs::copy(std::path::Path::new(&env.tls_cert_path).join(file), dir.path().join(file))
            .expect("copy a certificate");
    }
    let config = cli_environment(&env, &dir.path().to_string_lossy());
    let err = BollardDriver::new(&config).expect_err("key.pem is missing");
    assert!(matches!(err, DriverError::Config { .. }), "{err:?}");
    assert!(!err.is_transient());
}
