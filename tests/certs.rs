//! `raft-injector certs`: the CA is kept and reused, so rotation never changes what the
//! webhooks' caBundle must hold; key identifiers let a two-CA bundle verify either chain.

mod common;

use std::path::Path;
use std::process::Command;

fn certs(dir: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raft-injector"))
        .args(["certs", "--ip", "127.0.0.1", "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("certs runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `openssl verify` of `leaf` against the CAs in `bundle`.
fn verifies(bundle: &Path, leaf: &Path) -> bool {
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(bundle)
        .arg(leaf)
        .output()
        .expect("openssl runs");
    out.status.success()
}

fn text_of(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(cert)
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_second_run_into_the_same_directory_keeps_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stderr) = certs(dir.path(), &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("a new CA"), "{stderr}");
    let first_ca = dir.path().join("first-ca.crt");
    std::fs::copy(dir.path().join("ca.crt"), &first_ca).unwrap();
    let first_leaf = std::fs::read(dir.path().join("tls.crt")).unwrap();

    let (ok, stderr) = certs(dir.path(), &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("the existing CA"), "{stderr}");
    assert_ne!(
        std::fs::read(dir.path().join("tls.crt")).unwrap(),
        first_leaf,
        "a new serving certificate"
    );
    assert!(
        verifies(&first_ca, &dir.path().join("tls.crt")),
        "the second serving certificate verifies against the first CA"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "tls.key"] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key} is private");
        }
    }
}

#[tokio::test]
async fn a_rotated_pair_is_trusted_through_the_first_ca_in_a_real_handshake() {
    let dir = tempfile::tempdir().unwrap();
    assert!(certs(dir.path(), &[]).0);
    let first_ca = std::fs::read(dir.path().join("ca.crt")).unwrap();
    assert!(certs(dir.path(), &[]).0);
    let paths = raft_injector::server::tls::CertPaths {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    let server = common::tls::start(paths, axum::Router::new(), Default::default()).await;
    let tls = common::tls::connector(&first_ca, &[b"http/1.1"]);
    // `connect` unwraps the handshake: it fails if the first CA does not sign this pair.
    let _stream = common::tls::connect(&tls, server.addr).await;
}

#[test]
fn certificates_carry_key_identifiers_and_a_two_ca_bundle_verifies_both() {
    let dir = tempfile::tempdir().unwrap();
    assert!(certs(dir.path(), &[]).0);
    let old_leaf = dir.path().join("old-tls.crt");
    std::fs::copy(dir.path().join("tls.crt"), &old_leaf).unwrap();
    let old_ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();

    let (ok, stderr) = certs(dir.path(), &["--new-ca"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("a new CA"), "{stderr}");
    let new_ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    assert_ne!(old_ca, new_ca);

    for cert in ["ca.crt", "tls.crt"] {
        let text = text_of(&dir.path().join(cert));
        assert!(text.contains("Subject Key Identifier"), "{cert}: {text}");
    }
    assert!(text_of(&dir.path().join("tls.crt")).contains("Authority Key Identifier"));

    // During a CA change the caBundle holds both, in either order.
    for bundle in [format!("{old_ca}{new_ca}"), format!("{new_ca}{old_ca}")] {
        let path = dir.path().join("bundle.crt");
        std::fs::write(&path, bundle).unwrap();
        assert!(verifies(&path, &dir.path().join("tls.crt")));
        assert!(verifies(&path, &old_leaf));
    }
    // And the new CA alone does not vouch for the old pair.
    assert!(!verifies(&dir.path().join("ca.crt"), &old_leaf));
}

#[test]
fn half_a_ca_is_an_error_that_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    assert!(certs(dir.path(), &[]).0);
    std::fs::remove_file(dir.path().join("ca.key")).unwrap();
    let before = std::fs::read(dir.path().join("tls.crt")).unwrap();
    let (ok, stderr) = certs(dir.path(), &[]);
    assert!(!ok);
    assert!(
        stderr.contains("ca.crt exists but") && stderr.contains("--new-ca"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("tls.crt")).unwrap(),
        before,
        "nothing was written"
    );

    std::fs::write(dir.path().join("ca.key"), "not a key").unwrap();
    let (ok, stderr) = certs(dir.path(), &[]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot be reused") && stderr.contains("ca.key"),
        "{stderr}"
    );
}

/// Private keys stay out of `Debug` output (logs, panics) and out of reach of other users:
/// `certs` narrows a key file that already exists with a wider mode to 0600.
#[test]
fn keys_never_show_in_debug_output_and_key_files_are_0600_even_when_they_existed() {
    use raft_injector::certs::rotation::Stored;
    use std::os::unix::fs::PermissionsExt;
    let request = raft_injector::certs::CertRequest {
        service: "raft-injector".to_owned(),
        namespace: "raft-injector".to_owned(),
        cluster_domain: "cluster.local".to_owned(),
        ips: vec![],
        days: 30,
    };
    let issued = raft_injector::certs::issue(&request, None).unwrap();
    let stored = Stored {
        ca_cert: Some(issued.ca.cert.clone()),
        ca_key: Some(issued.ca.key.clone()),
        previous_ca: None,
        tls_cert: Some(issued.cert.clone()),
        tls_key: Some(issued.key.clone()),
    };
    for shown in [
        format!("{issued:?}"),
        format!("{:?}", issued.ca),
        format!("{stored:?}"),
    ] {
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        assert!(
            shown.contains("redacted") && shown.contains("BEGIN CERTIFICATE"),
            "{shown}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    for key in ["ca.key", "tls.key"] {
        std::fs::write(dir.path().join(key), "old").unwrap();
        std::fs::set_permissions(dir.path().join(key), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    let (ok, stderr) = certs(
        dir.path(),
        &[
            "--service",
            "raft-injector",
            "--namespace",
            "raft-injector",
            "--new-ca",
        ],
    );
    assert!(ok, "{stderr}");
    for key in ["ca.key", "tls.key"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
        let text = std::fs::read_to_string(dir.path().join(key)).unwrap();
        assert!(text.contains("PRIVATE KEY"), "{key} was rewritten");
    }
}
