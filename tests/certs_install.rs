//! `certs/install.sh` against a real kube-apiserver: first install, a rotation that keeps
//! the CA (no caBundle change at all), and a CA change that trusts old and new CAs until
//! every webhook pod serves the new pair, and keeps both when that cannot be confirmed.
//! It works on webhook configurations of its own that select nothing, so the other
//! end-to-end tests are not affected.

mod common;

use std::path::Path;
use std::process::Command;

use common::controlplane::{apply_shipped_webhooks, control_plane, namespace, run, ControlPlane};
use serde_json::Value;

struct Install<'a> {
    plane: &'a ControlPlane,
    ns: String,
    name: String,
}

impl Install<'_> {
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("bash")
            .arg(common::root().join("certs/install.sh"))
            .args(args)
            .env("KUBECONFIG", &self.plane.kubeconfig)
            .env("NAMESPACE", &self.ns)
            .env("WEBHOOK_CONFIGURATION", &self.name)
            .env("RAFT_INJECTOR", env!("CARGO_BIN_EXE_raft-injector"))
            .output()
            .expect("install.sh runs");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// The caBundle of every webhook of both configurations, decoded.
    fn bundles(&self) -> Vec<String> {
        let mut bundles = Vec::new();
        for kind in [
            "mutatingwebhookconfiguration",
            "validatingwebhookconfiguration",
        ] {
            let (ok, stdout, stderr) =
                run(self.plane, &["get", kind, &self.name, "-o", "json"], None);
            assert!(ok, "{stderr}");
            let config: Value = serde_json::from_str(&stdout).unwrap();
            for hook in config["webhooks"].as_array().unwrap() {
                let encoded = hook["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap_or_default();
                bundles.push(decode(encoded));
            }
        }
        bundles
    }

    /// The one caBundle all webhooks share.
    fn bundle(&self) -> String {
        let bundles = self.bundles();
        assert!(
            bundles.windows(2).all(|w| w[0] == w[1]),
            "every webhook has the same caBundle"
        );
        bundles[0].clone()
    }

    fn secret(&self, name: &str, key: &str, dir: &Path) -> std::path::PathBuf {
        let (ok, stdout, stderr) = run(
            self.plane,
            &["get", "secret", "-n", &self.ns, name, "-o", "json"],
            None,
        );
        assert!(ok, "{stderr}");
        let secret: Value = serde_json::from_str(&stdout).unwrap();
        let path = dir.join(format!("{name}-{key}"));
        std::fs::write(&path, decode(secret["data"][key].as_str().unwrap())).unwrap();
        path
    }
}

fn decode(encoded: &str) -> String {
    let out = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(encoded.as_bytes())?;
            child.wait_with_output()
        })
        .expect("base64 runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cert_count(pem: &str) -> usize {
    pem.matches("BEGIN CERTIFICATE").count()
}

fn verifies(ca: &Path, leaf: &Path) -> bool {
    Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(ca)
        .arg(leaf)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Webhook configurations like the shipped ones, named `name`, calling a Service in `ns`
/// and selecting no object at all.
fn register(plane: &ControlPlane, ns: &str, name: &str) {
    apply_shipped_webhooks(plane, |doc| {
        doc["metadata"]["name"] = Value::from(name);
        for hook in doc["webhooks"].as_array_mut().unwrap() {
            hook["clientConfig"]["service"]["namespace"] = Value::from(ns);
            hook["objectSelector"] =
                serde_json::json!({"matchLabels": {"raft-injector.io/test-never": "selected"}});
        }
    });
}

#[test]
fn rotation_keeps_the_ca_and_a_ca_change_never_leaves_a_window() {
    let plane = control_plane();
    let ns = namespace(plane, "rotation", false);
    let install = Install {
        plane,
        name: format!("{ns}-webhooks"),
        ns,
    };
    register(plane, &install.ns, &install.name);
    let dir = tempfile::tempdir().unwrap();

    // First install: one CA, in the bundle and kept in its Secret.
    let (ok, out) = install.run(&[]);
    assert!(ok, "{out}");
    let first_ca = install.secret("raft-injector-ca", "ca.crt", dir.path());
    let first_ca_pem = std::fs::read_to_string(&first_ca).unwrap();
    assert_eq!(cert_count(&install.bundle()), 1, "{out}");
    assert_eq!(install.bundle().trim(), first_ca_pem.trim());
    let first_leaf = install.secret("raft-injector-tls", "tls.crt", dir.path());
    assert!(verifies(&first_ca, &first_leaf));
    let first_leaf_pem = std::fs::read_to_string(&first_leaf).unwrap();

    // A rotation: new serving pair, same CA, the caBundle untouched.
    let (ok, out) = install.run(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("the CA is unchanged"), "{out}");
    assert_eq!(install.bundle().trim(), first_ca_pem.trim());
    let second_leaf = install.secret("raft-injector-tls", "tls.crt", dir.path());
    assert_ne!(
        std::fs::read_to_string(&second_leaf).unwrap(),
        first_leaf_pem
    );
    assert!(
        verifies(&first_ca, &second_leaf),
        "the rotated pair is trusted through the bundle already in place"
    );

    // A CA change while a webhook pod cannot be confirmed to serve the new pair: both CAs
    // stay trusted, and the script says how to finish.
    let slice = format!(
        r#"{{"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice","metadata":{{"name":"raft-injector-test","namespace":"{}","labels":{{"kubernetes.io/service-name":"raft-injector"}}}},"addressType":"IPv4","endpoints":[{{"addresses":["10.0.0.50"],"targetRef":{{"kind":"Pod","name":"raft-injector-not-serving","namespace":"{}"}}}}],"ports":[{{"name":"https","port":8443,"protocol":"TCP"}}]}}"#,
        install.ns, install.ns
    );
    let (ok, _, stderr) = run(plane, &["apply", "-f", "-"], Some(&slice));
    assert!(ok, "{stderr}");
    let (ok, out) = install.run(&["--new-ca", "--wait-seconds", "2"]);
    assert!(!ok, "it cannot confirm the pod serves the new pair: {out}");
    assert!(
        out.contains("raft-injector-not-serving") && out.contains("keeps both CAs"),
        "{out}"
    );
    let bundle = install.bundle();
    assert_eq!(cert_count(&bundle), 2, "old and new CA: {bundle}");
    assert!(bundle.contains(first_ca_pem.trim()));
    let new_leaf = install.secret("raft-injector-tls", "tls.crt", dir.path());
    let both = dir.path().join("both.crt");
    std::fs::write(&both, &bundle).unwrap();
    assert!(
        verifies(&both, &new_leaf) && verifies(&both, &second_leaf),
        "old and new serving pairs are both trusted meanwhile"
    );

    // Once no pod serves the old pair any more, a rerun drops the old CA.
    let (ok, _, stderr) = run(
        plane,
        &[
            "delete",
            "endpointslice",
            "-n",
            &install.ns,
            "raft-injector-test",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    let (ok, out) = install.run(&["--wait-seconds", "2"]);
    assert!(ok, "{out}");
    let bundle = install.bundle();
    assert_eq!(cert_count(&bundle), 1, "{out}\n{bundle}");
    assert!(!bundle.contains(first_ca_pem.trim()), "the old CA is gone");
    let final_ca = install.secret("raft-injector-ca", "ca.crt", dir.path());
    let final_leaf = install.secret("raft-injector-tls", "tls.crt", dir.path());
    assert!(verifies(&final_ca, &final_leaf));

    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        run(plane, &["delete", kind, &install.name], None);
    }
}
