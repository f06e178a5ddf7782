//! The Helm chart on the local cluster's real node, with the real `helm`: install (Helm
//! generates the certificates), admission through the Service, an upgrade with changed values
//! while requests keep coming (none fails), and an uninstall that leaves no webhook
//! configuration, Secret or RBAC behind — a leftover fail-closed webhook would block every
//! opted-in namespace.
//!
//! Its own test binary: it replaces the kustomize installation the other node tests use
//! (they install it again when they start).

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::controlplane::{get, namespace, run, ControlPlane};
use common::node::installed;

fn helm(plane: &ControlPlane, args: &[&str]) -> (bool, String) {
    let out = Command::new(common::helm())
        .args(args)
        .env("KUBECONFIG", &plane.kubeconfig)
        .output()
        .expect("helm runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Uninstalls on the way out, also when an assertion fails midway.
struct Release<'a>(&'a ControlPlane);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let _ = helm(
            self.0,
            &[
                "uninstall",
                "raft-injector",
                "-n",
                "raft-injector",
                "--wait",
            ],
        );
    }
}

fn leftovers(plane: &ControlPlane) -> Vec<String> {
    [
        ("", "mutatingwebhookconfiguration/raft-injector"),
        ("", "validatingwebhookconfiguration/raft-injector"),
        ("", "clusterrole/raft-injector"),
        ("", "clusterrole/raft-injector-member"),
        ("", "clusterrolebinding/raft-injector"),
        ("raft-injector", "secret/raft-injector-tls"),
        ("raft-injector", "deployment/raft-injector"),
        ("raft-injector", "service/raft-injector"),
        ("raft-injector", "pdb/raft-injector"),
    ]
    .into_iter()
    .filter(|(ns, what)| get(plane, ns, what).is_some())
    .map(|(_, what)| what.to_owned())
    .collect()
}

#[test]
fn helm_installs_upgrades_and_uninstalls_cleanly() {
    // The image is built and loaded by the kustomize install; then that installation goes.
    let plane = installed();
    let manifests = common::controlplane::file("manifests");
    let (ok, _, stderr) = run(
        plane,
        &[
            "delete",
            "-k",
            &manifests,
            "--ignore-not-found",
            "--wait=true",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    assert_eq!(leftovers(plane), Vec::<String>::new());

    let chart = common::root()
        .join("charts/raft-injector")
        .display()
        .to_string();
    let release = Release(plane);
    let (ok, out) = helm(
        plane,
        &[
            "install",
            "raft-injector",
            &chart,
            "-n",
            "raft-injector",
            "--create-namespace",
            "--set",
            "certs.mode=generate",
            "--wait",
            "--timeout",
            "3m",
        ],
    );
    assert!(ok, "helm install: {out}");
    let deployment = get(plane, "raft-injector", "deployment/raft-injector").unwrap();
    assert_eq!(deployment["status"]["readyReplicas"], 2, "{deployment:#}");

    // Admission through the Service with Helm's certificate: injected, and a bad one denied.
    let ns = namespace(plane, "helm", true);
    let example = common::controlplane::file("examples/etcd.yaml");
    let (ok, stdout, stderr) = run(
        plane,
        &[
            "apply",
            "--dry-run=server",
            "-n",
            &ns,
            "-f",
            &example,
            "-o",
            "yaml",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("raft-injector-reconcile"),
        "the dry run was injected"
    );
    let denied = common::controlplane::file("examples/denied-even-replicas.yaml");
    let (ok, _, stderr) = run(
        plane,
        &["apply", "--dry-run=server", "-n", &ns, "-f", &denied],
        None,
    );
    assert!(
        !ok && stderr.contains("denied the request"),
        "denied: {stderr}"
    );

    // An upgrade with changed values rolls the webhook; no request fails meanwhile.
    let secret_before =
        get(plane, "raft-injector", "secret/raft-injector-tls").unwrap()["data"]["ca.crt"].clone();
    let stop = Arc::new(AtomicBool::new(false));
    // Three clients, so requests keep coming through the whole rollout.
    let appliers: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            let ns = ns.clone();
            let example = example.clone();
            std::thread::spawn(move || {
                let plane = installed();
                let started = Instant::now();
                let mut results = Vec::new();
                // Bounded: at most 300 requests or 180 s per client.
                for _ in 0..300 {
                    if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(180)
                    {
                        break;
                    }
                    let (ok, _, stderr) = run(
                        plane,
                        &["apply", "--dry-run=server", "-n", &ns, "-f", &example],
                        None,
                    );
                    results.push((ok, stderr));
                }
                results
            })
        })
        .collect();
    let (ok, out) = helm(
        plane,
        &[
            "upgrade",
            "raft-injector",
            &chart,
            "-n",
            "raft-injector",
            "--reuse-values",
            "--set",
            "config.maxReplicas=9",
            "--wait",
            "--timeout",
            "3m",
        ],
    );
    // helm --wait returns once the new pods are Ready; the old ones are still draining.
    common::node::wait(
        plane,
        "raft-injector",
        120,
        "the old webhook pods did not go away",
        || {
            let pods = get(plane, "raft-injector", "pods")?;
            (pods["items"].as_array()?.len() == 2).then_some(())
        },
    );
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(bool, String)> = appliers
        .into_iter()
        .flat_map(|a| a.join().expect("the applier finishes"))
        .collect();
    assert!(ok, "helm upgrade: {out}");
    assert!(
        results.len() >= 6,
        "only {} applies during the rollout; too few to mean anything",
        results.len()
    );
    let failures: Vec<&String> = results
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, e)| e)
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} applies failed during the upgrade, e.g. {:?}",
        failures.len(),
        results.len(),
        failures.first()
    );
    let deployment = get(plane, "raft-injector", "deployment/raft-injector").unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("RAFT_INJECTOR_MAX_REPLICAS"), "{env}");
    assert_eq!(
        get(plane, "raft-injector", "secret/raft-injector-tls").unwrap()["data"]["ca.crt"],
        secret_before,
        "an upgrade keeps the generated CA"
    );
    eprintln!(
        "helm upgrade: {} applies while the webhook rolled, all admitted",
        results.len()
    );

    // Uninstall leaves nothing that could block admission.
    drop(release);
    assert_eq!(
        leftovers(plane),
        Vec::<String>::new(),
        "helm uninstall left these"
    );
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}
