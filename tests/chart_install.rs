//! The Helm chart on the local cluster's real node, with the real `helm`, and
//! `raft-injector check` at every step: an `external` install without its Secret fails at
//! once → install with the defaults (the webhook makes its own certificates) → check all
//! green → the etcd example runs and check sees its 3 members → a stale member added by hand
//! makes check fail naming it, with the command that removes it → an upgrade with changed
//! values while requests keep coming (none fails) → a CA change by the webhook itself (a
//! longer CA validity), old and new CA trusted, while requests keep coming (none fails) → a
//! caBundle that does not trust the served certificate makes check fail, and the webhook
//! puts its own back when it starts → an uninstall that leaves no webhook configuration, Secret or
//! RBAC behind (a leftover fail-closed webhook would block every opted-in namespace), which
//! check reports as no installation.
//!
//! Its own test binary: it replaces the kustomize installation the other node tests use
//! (they install it again when they start).

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::controlplane::{get, namespace, run, ControlPlane};
use common::node::{apply_etcd, exec, installed, wait, wait_members, wait_ready};
use serde_json::Value;

/// Runs `program` against the local cluster: (exit code 0, stdout and stderr).
fn tool(program: &str, plane: &ControlPlane, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .env("KUBECONFIG", &plane.kubeconfig)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn helm(plane: &ControlPlane, args: &[&str]) -> (bool, String) {
    tool(common::helm(), plane, args)
}

/// `raft-injector check ARGS` against the local cluster.
fn check(plane: &ControlPlane, args: &[&str]) -> (bool, String) {
    let args: Vec<&str> = std::iter::once("check")
        .chain(args.iter().copied())
        .collect();
    tool(env!("CARGO_BIN_EXE_raft-injector"), plane, &args)
}

fn assert_lines(out: &str, lines: &[&str]) {
    for line in lines {
        assert!(out.contains(line), "check printed no {line:?}:\n{out}");
    }
}

/// Three clients applying a dry run in a loop, so requests keep coming through a change.
struct Appliers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<(bool, String)>>>,
}

impl Appliers {
    fn start(ns: &str, example: &str) -> Appliers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..3)
            .map(|_| {
                let stop = stop.clone();
                let ns = ns.to_owned();
                let example = example.to_owned();
                std::thread::spawn(move || {
                    let plane = installed();
                    let started = Instant::now();
                    let mut results = Vec::new();
                    // Bounded: at most 600 requests or 300 s per client.
                    for _ in 0..600 {
                        if stop.load(Ordering::Relaxed)
                            || started.elapsed() > Duration::from_secs(300)
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
        Appliers { stop, threads }
    }

    /// Stops them and asserts every apply was admitted; returns how many there were.
    fn stop(self, during: &str) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let results: Vec<(bool, String)> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().expect("the applier finishes"))
            .collect();
        assert!(
            results.len() >= 6,
            "only {} applies during {during}; too few to mean anything",
            results.len()
        );
        let failures: Vec<&String> = results
            .iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, e)| e)
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} applies failed during {during}, e.g. {:?}",
            failures.len(),
            results.len(),
            failures.first()
        );
        results.len()
    }
}

/// How many CA certificates the mutating webhook's caBundle holds.
fn ca_bundle_certificates(plane: &ControlPlane) -> usize {
    use base64::Engine;
    let config = get(plane, "", "mutatingwebhookconfiguration/raft-injector").unwrap();
    let bundle = config["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(bundle)
        .unwrap();
    String::from_utf8_lossy(&pem)
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// SHA-256 of a base64 PEM certificate's DER, as the webhook's metric shows it.
fn fingerprint(pem_base64: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let pem = base64::engine::general_purpose::STANDARD
        .decode(pem_base64)
        .unwrap();
    let body: String = String::from_utf8_lossy(&pem)
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fingerprint each webhook pod serves, from its metrics through the API server.
fn serving(plane: &ControlPlane) -> Vec<String> {
    let Some(pods) = get(plane, "raft-injector", "pods") else {
        return Vec::new();
    };
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .map(|pod| {
            let path = format!("/api/v1/namespaces/raft-injector/pods/{pod}:9090/proxy/metrics");
            let (_, metrics, _) = run(plane, &["get", "--raw", &path], None);
            metrics
                .lines()
                .find_map(|l| l.strip_prefix("raft_injector_serving_certificate_info{sha256=\""))
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("unread")
                .to_owned()
        })
        .collect()
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
        ("", "clusterrole/raft-injector-certs"),
        ("", "clusterrolebinding/raft-injector-certs"),
        ("", "validatingadmissionpolicy/raft-injector-own-rights"),
        (
            "",
            "validatingadmissionpolicybinding/raft-injector-own-rights",
        ),
        ("raft-injector", "role/raft-injector-certs"),
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
    // `helm install` of the chart with `values`, waiting for the pods.
    let install = |values: &[&str]| {
        let mut args = vec![
            "install",
            "raft-injector",
            &chart,
            "-n",
            "raft-injector",
            "--create-namespace",
            "--wait",
            "--timeout",
            "3m",
        ];
        args.extend_from_slice(values);
        helm(plane, &args)
    };
    // The external mode without its Secret fails at once, saying what to do, and creates
    // nothing.
    let started = Instant::now();
    let (ok, out) = install(&["--set", "certs.mode=external"]);
    assert!(
        !ok && out.contains(
            "Secret raft-injector/raft-injector-tls with tls.crt and tls.key does not exist"
        ) && out.contains("leave certs.mode at managed"),
        "an external install without its Secret must fail at once: {out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(leftovers(plane), Vec::<String>::new());

    let release = Release(plane);
    // The defaults: no certificate values at all.
    let (ok, out) = install(&[]);
    assert!(ok, "helm install: {out}");
    let secret = get(plane, "raft-injector", "secret/raft-injector-tls")
        .expect("the webhook made its Secret");
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["kind"], "Service",
        "owned by the webhook's Service, so an uninstall removes it: {secret:#}"
    );
    assert_eq!(
        ca_bundle_certificates(plane),
        1,
        "the webhook set the caBundle"
    );
    let deployment = get(plane, "raft-injector", "deployment/raft-injector").unwrap();
    assert_eq!(deployment["status"]["readyReplicas"], 2, "{deployment:#}");

    // Admission through the Service with Helm's certificate: injected, and a bad one denied.
    let ns = namespace(plane, "helm", true);
    let example = common::controlplane::file("examples/etcd.yaml");
    // helm --wait returns once the pods are Ready; kube-proxy programs the new Service's
    // ClusterIP a moment later (until then: connection refused), as on any cluster.
    let started = Instant::now();
    let mut last = String::new();
    let stdout = common::controlplane::eventually(30, || {
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
        last = stderr;
        ok.then_some(stdout)
    })
    .unwrap_or_else(|| panic!("no dry run admitted within 30 s of helm install: {last}"));
    eprintln!(
        "first admission through the new Service {:?} after helm install returned",
        started.elapsed()
    );
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

    // check on the fresh install: every installation check passes.
    let (ok, out) = check(plane, &["-n", &ns]);
    assert!(ok, "check failed on a fresh install:\n{out}");
    assert_lines(
        &out,
        &[
            "√ webhook configurations are registered",
            "√ webhook Service has ready endpoints (2 ready:",
            "√ webhook pods run one raft-injector version",
            "√ every webhook pod serves a certificate the caBundles trust for raft-injector.raft-injector.svc (2 pods)",
            "√ serving certificate is not about to expire (valid ",
            &format!("√ a valid Raft StatefulSet is admitted and injected (server-side dry run) in namespace {ns}"),
            "√ an even replica count is denied (server-side dry run)",
            "Status check results are √",
        ],
    );
    assert!(!out.contains("\n× "), "{out}");
    eprintln!("check on a fresh install:\n{out}");

    // The etcd example runs; check reads its members from inside a member.
    apply_etcd(plane, &ns, |m| m);
    let pods = ["etcd-0", "etcd-1", "etcd-2"];
    wait_ready(plane, &ns, &pods);
    wait_members(plane, &ns, &pods, &pods);
    let out = wait(
        plane,
        &ns,
        60,
        "check did not pass with the etcd example running",
        || {
            let (ok, out) = check(plane, &["-n", &ns]);
            ok.then_some(out)
        },
    );
    assert_lines(
        &out,
        &[
            &format!("StatefulSet {ns}/etcd"),
            "√ Raft rules hold now",
            "√ injected, and up to date with the running webhook (raft-injector ",
            "√ Raft members match spec.replicas (3 members: etcd-0, etcd-1, etcd-2; leader etcd-",
        ],
    );

    // A stale member added by hand fails check, named, with the command that removes it.
    // etcd refuses a member add for a few seconds after a member started ("unhealthy cluster").
    let added = wait(plane, &ns, 60, "etcdctl member add was refused", || {
        exec(
            plane,
            &ns,
            "etcd-0",
            &[
                "etcdctl",
                "member",
                "add",
                "fake",
                "--peer-urls=http://fake.invalid:2380",
            ],
        )
        .ok()
    });
    let id = added
        .split_whitespace()
        .nth(1)
        .filter(|_| added.starts_with("Member "))
        .unwrap_or_else(|| panic!("member add printed {added:?}"))
        .to_owned();
    let (ok, out) = check(plane, &["-n", &ns]);
    assert!(!ok, "check passed with a stale member:\n{out}");
    assert_lines(
        &out,
        &[
            "× Raft members match spec.replicas",
            &format!("stale member fake (id {id}, not started, http://fake.invalid:2380): not a pod of StatefulSet etcd"),
            &format!("etcdctl member remove {id}"),
            "Status check results are ×",
        ],
    );
    eprintln!("check with a stale member:\n{out}");
    let (ok, json) = check(plane, &["-n", &ns, "-o", "json"]);
    assert!(!ok);
    let json: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(json["success"], false);
    let failed: Vec<&Value> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["outcome"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{json:#}");
    assert_eq!(failed[0]["group"], format!("StatefulSet {ns}/etcd"));
    assert!(failed[0]["detail"]
        .as_str()
        .unwrap()
        .contains("stale member fake"));
    assert!(failed[0]["hint"]
        .as_str()
        .unwrap()
        .contains("etcdctl member remove"));
    exec(plane, &ns, "etcd-0", &["etcdctl", "member", "remove", &id]).expect("member remove");
    wait(
        plane,
        &ns,
        60,
        "check did not pass once the stale member was removed",
        || check(plane, &["-n", &ns]).0.then_some(()),
    );

    // An upgrade with changed values rolls the webhook; no request fails meanwhile.
    let secret_before =
        get(plane, "raft-injector", "secret/raft-injector-tls").unwrap()["data"]["ca.crt"].clone();
    let appliers = Appliers::start(&ns, &example);
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
    let applied = appliers.stop("the upgrade");
    assert!(ok, "helm upgrade: {out}");
    let deployment = get(plane, "raft-injector", "deployment/raft-injector").unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("RAFT_INJECTOR_MAX_REPLICAS"), "{env}");
    assert_eq!(
        get(plane, "raft-injector", "secret/raft-injector-tls").unwrap()["data"]["ca.crt"],
        secret_before,
        "an upgrade keeps the webhook's CA"
    );
    eprintln!("helm upgrade: {applied} applies while the webhook rolled, all admitted");

    // A CA change made by the webhook itself, under load: a longer CA validity makes the
    // current CA short of it, so the new pods make a new CA, trust old and new in every
    // caBundle, and only then serve a leaf from the new CA; the old pods' leaf stays trusted
    // through the old CA. No request fails. (A long pass interval from here on, so that the
    // foreign caBundle below stays until the pods restart.)
    let appliers = Appliers::start(&ns, &example);
    let started = Instant::now();
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
            "certs.managed.caValidityDays=36500",
            "--set",
            "config.certReloadSeconds=3600",
            "--wait",
            "--timeout",
            "3m",
        ],
    );
    assert!(ok, "helm upgrade (CA validity): {out}");
    let secret = get(plane, "raft-injector", "secret/raft-injector-tls").unwrap();
    assert_ne!(secret["data"]["ca.crt"], secret_before, "a new CA");
    assert_eq!(
        secret["data"]["ca-previous.crt"], secret_before,
        "the old CA is kept as the previous one"
    );
    assert_eq!(
        ca_bundle_certificates(plane),
        2,
        "old and new CA are trusted"
    );
    let new_leaf = fingerprint(secret["data"]["tls.crt"].as_str().unwrap());
    common::node::wait(
        plane,
        "raft-injector",
        120,
        "the webhook pods do not all serve the new leaf",
        || {
            let served = serving(plane);
            (served.len() == 2 && served.iter().all(|f| *f == new_leaf)).then_some(())
        },
    );
    let took = started.elapsed();
    let applied = appliers.stop("the CA change");
    let (ok, out) = check(plane, &["-n", &ns]);
    assert!(ok, "check after the CA change:\n{out}");
    eprintln!(
        "CA change: pods served a leaf of the new CA after {took:?}; {applied} applies meanwhile, all admitted"
    );

    // A caBundle that does not trust what the pods serve fails check (and admission).
    let other_ca = tempfile::tempdir().unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_raft-injector"))
        .args(["certs", "--out"])
        .arg(other_ca.path())
        .output()
        .unwrap();
    assert!(made.status.success());
    let ca = std::fs::read(other_ca.path().join("ca.crt")).unwrap();
    let patch = serde_json::json!([{
        "op": "replace",
        "path": "/webhooks/0/clientConfig/caBundle",
        "value": common::controlplane::base64(&ca),
    }]);
    let (ok, _, stderr) = run(
        plane,
        &[
            "patch",
            "mutatingwebhookconfiguration",
            "raft-injector",
            "--type=json",
            "-p",
            &patch.to_string(),
        ],
        None,
    );
    assert!(ok, "{stderr}");
    let (ok, out) = check(plane, &["-n", &ns]);
    assert!(!ok, "check passed with a foreign caBundle:\n{out}");
    assert_lines(
        &out,
        &[
            "× every webhook pod serves a certificate the caBundles trust",
            "that the caBundle of inject.raft-injector.io does not trust: it is not signed by the CA",
            "× a valid Raft StatefulSet is admitted and injected",
        ],
    );
    eprintln!("check with a foreign caBundle:\n{out}");
    // The webhook puts its own caBundle back (here on start; else within a pass).
    let (ok, _, stderr) = run(
        plane,
        &[
            "-n",
            "raft-injector",
            "rollout",
            "restart",
            "deployment/raft-injector",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    wait(
        plane,
        &ns,
        180,
        "check did not pass after the webhook restarted with a foreign caBundle",
        || check(plane, &["-n", &ns]).0.then_some(()),
    );
    assert_eq!(ca_bundle_certificates(plane), 2, "its own CAs are back");

    // Uninstall leaves nothing that could block admission, and check says nothing is installed.
    drop(release);
    // The Secret goes with its owner, the Service, through the garbage collector.
    let mut left = leftovers(plane);
    for _ in 0..30 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        left = leftovers(plane);
    }
    assert_eq!(left, Vec::<String>::new(), "helm uninstall left these");
    let (ok, out) = check(plane, &["-n", &ns]);
    assert!(!ok, "{out}");
    assert_lines(
        &out,
        &[
            "× webhook configurations are registered",
            "no webhook configuration of raft-injector was found",
        ],
    );
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}
