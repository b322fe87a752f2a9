//! TLS: with a certificate and key configured, `serve` speaks HTTPS (certificate made with the
//! openssl CLI, which the test environment provides).

mod common;

use std::process::Command;
use std::sync::Arc;

use common::TestServer;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn openssl(args: &[&str], dir: &std::path::Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (scripts/test-env installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for localhost/127.0.0.1 signed by it: (ca, cert, key).
fn make_cert(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-subj", "/CN=berth-test-ca", "-days", "1", "-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(&ca, dir);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend(["-subj", "/CN=localhost", "-keyout", "tls.key", "-out", "tls.csr"]);
    openssl(&csr, dir);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "tls.crt",
        ],
        dir,
    );
    (dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key"))
}

#[tokio::test]
async fn serve_speaks_https_when_a_certificate_and_key_are_configured() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_cert(certs.path());
    let (c2, k2) = (cert.clone(), key.clone());
    let srv = TestServer::start_with(move |c| {
        c.tls_cert = Some(c2);
        c.tls_key = Some(k2);
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tls.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#"{"status":"ok"}"#), "{resp}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = plain.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

#[tokio::test]
async fn serve_refuses_a_certificate_without_a_key() {
    let certs = tempfile::tempdir().unwrap();
    let (_, cert, _) = make_cert(certs.path());
    let dir = tempfile::tempdir().unwrap();
    let config = berth_api::ServeConfig {
        data_dir: dir.path().to_owned(),
        tls_cert: Some(cert),
        ..berth_api::ServeConfig::default()
    };
    let (_tx, rx) = tokio::sync::watch::channel(true);
    let state = common::build_state(
        config,
        berth_controller::store::StoreConfig::new(dir.path().join("store")),
        rx,
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = berth_api::serve(listener, state, std::future::pending()).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
