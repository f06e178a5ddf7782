//! End to end through a real kube-apiserver: webhook selection, patch application, what
//! `kubectl` prints for denials and warnings, the scale subresource, dry-run, re-applies,
//! and the Pods the statefulset controller creates from the injected template.

mod common;

use common::controlplane::{eventually, file, get, namespace, run, with_webhook, ControlPlane};
use serde_json::Value;

fn cluster() -> &'static ControlPlane {
    with_webhook("e2e")
}

fn apply(plane: &ControlPlane, ns: &str, manifest: &str, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["apply", "-n", ns, "-f", "-"];
    args.extend_from_slice(extra);
    run(plane, &args, Some(manifest))
}

fn env_names(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| e["name"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn is_injected(sts: &Value) -> bool {
    sts["metadata"]["annotations"]["raft-injector.io/status"].is_string()
        && env_names(&sts["spec"]["template"]["spec"]["containers"][0])
            .contains(&"RAFT_PEERS".to_owned())
}

fn statefulset(plane: &ControlPlane, ns: &str, name: &str) -> Value {
    get(plane, ns, &format!("statefulset/{name}"))
        .unwrap_or_else(|| panic!("statefulset {ns}/{name} exists"))
}

/// The revisions the statefulset controller recorded for `name` (sorted), and the one it
/// is rolling pods to, once it has observed the latest generation.
fn revisions(plane: &ControlPlane, ns: &str, name: &str) -> (Vec<String>, String) {
    eventually(30, || {
        let sts = statefulset(plane, ns, name);
        if sts["status"]["observedGeneration"] != sts["metadata"]["generation"] {
            return None;
        }
        let update = sts["status"]["updateRevision"].as_str()?.to_owned();
        let list = get(plane, ns, "controllerrevisions")?;
        let mut owned: Vec<String> = list["items"]
            .as_array()?
            .iter()
            .filter(|r| {
                r["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|o| o["name"] == name))
            })
            .filter_map(|r| r["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        owned.sort();
        owned.contains(&update).then_some((owned, update))
    })
    .expect("the statefulset controller records a revision")
}

#[test]
fn only_opted_in_namespaces_and_labelled_statefulsets_are_injected() {
    let plane = cluster();
    let off = namespace(plane, "optout", false);
    let on = namespace(plane, "optin", true);
    let example = common::read("examples/ratis-app.yaml");

    let (ok, _, stderr) = apply(plane, &off, &example, &[]);
    assert!(ok, "{stderr}");
    assert!(
        !is_injected(&statefulset(plane, &off, "counter")),
        "a namespace without the label is not touched"
    );

    let (ok, _, stderr) = apply(plane, &on, &example, &[]);
    assert!(ok, "{stderr}");
    assert!(is_injected(&statefulset(plane, &on, "counter")));

    let unlabelled = example.replace("    raft-injector.io/raft: \"true\"\n", "");
    let unlabelled = unlabelled.replace(
        "name: counter\n  labels:\n    app: counter\nspec:\n  serviceName",
        "name: plain\n  labels:\n    app: counter\nspec:\n  serviceName",
    );
    let (ok, _, stderr) = apply(plane, &on, &unlabelled, &[]);
    assert!(ok, "{stderr}");
    assert!(
        !is_injected(&statefulset(plane, &on, "plain")),
        "an unlabelled StatefulSet is not touched"
    );
}

#[test]
fn every_denial_reads_well_in_kubectl_apply_and_stores_nothing() {
    let plane = cluster();
    let ns = namespace(plane, "denials", true);
    let cases = [
        ("denied-even-replicas", "even-cluster", "spec.replicas is 4; a Raft cluster of 4 tolerates no more failures than 3 and needs a larger quorum — use 3 or 5"),
        ("denied-missing-service", "missing-service", "spec.serviceName is \"missing-service\" but Service"),
        ("denied-not-headless", "not-headless", "is not headless (spec.clusterIP is 10.0.0."),
        ("denied-selector-mismatch", "selector-mismatch", "selects app=other but the pod template is labelled app=selector-mismatch"),
    ];
    for (example, name, expected) in cases {
        let (ok, _, stderr) = apply(
            plane,
            &ns,
            &common::read(&format!("examples/{example}.yaml")),
            &[],
        );
        assert!(!ok, "{example} was admitted");
        let prefix = format!(
            "Error from server (Forbidden): error when creating \"STDIN\": admission webhook \"validate.raft-injector.io\" denied the request: StatefulSet {ns}/{name}: "
        );
        assert!(stderr.contains(&prefix), "{example}: {stderr}");
        assert!(stderr.contains(expected), "{example}: {stderr}");
        assert!(
            get(plane, &ns, &format!("statefulset/{name}")).is_none(),
            "{example}: a denied StatefulSet was stored"
        );
    }

    // A scale-down of more than two members through spec.replicas (rule 8 on UPDATE).
    let seven = common::read("examples/ratis-app.yaml").replace("replicas: 3", "replicas: 7");
    assert!(apply(plane, &ns, &seven, &[]).0);
    let (ok, _, stderr) = apply(
        plane,
        &ns,
        &seven.replace("replicas: 7", "replicas: 3"),
        &[],
    );
    assert!(!ok);
    assert!(
        stderr.contains("spec.replicas goes from 7 to 3, removing 4 members in one step"),
        "{stderr}"
    );
    assert_eq!(statefulset(plane, &ns, "counter")["spec"]["replicas"], 7);
}

#[test]
fn every_warning_is_printed_by_kubectl() {
    let plane = cluster();
    let ns = namespace(plane, "warnings", true);
    let manifest = common::read("examples/ratis-app.yaml")
        .replace("  publishNotReadyAddresses: true\n", "")
        .replace("replicas: 3", "replicas: 9")
        .replace("  podManagementPolicy: Parallel\n", "")
        .replace("  persistentVolumeClaimRetentionPolicy:\n    whenScaled: Delete\n", "")
        .replace(
            "          ports:\n            - name: raft",
            "          readinessProbe:\n            tcpSocket:\n              port: 9872\n          lifecycle:\n            preStop:\n              exec:\n                command: [/bin/drain]\n          env:\n            - name: RAFT_PORT\n              value: \"7000\"\n          ports:\n            - name: raft",
        );
    let (ok, _, stderr) = apply(plane, &ns, &manifest, &[]);
    assert!(ok, "{stderr}");
    let subject = format!("Warning: StatefulSet {ns}/counter: ");
    for expected in [
        "does not set spec.publishNotReadyAddresses: true",
        "spec.podManagementPolicy is OrderedReady",
        "spec.replicas is 9",
        "spec.persistentVolumeClaimRetentionPolicy.whenScaled is Retain",
        "already has a preStop hook",
        "sets env RAFT_PORT itself; raft-injector keeps your value instead of the injected \"9872\"",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(&subject) && l.contains(expected)),
            "missing warning {expected:?} in:\n{stderr}"
        );
    }
    let sts = statefulset(plane, &ns, "counter");
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    let port: Vec<&Value> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "RAFT_PORT")
        .collect();
    assert_eq!(port.len(), 1);
    assert_eq!(port[0]["value"], "7000", "the user's value is kept");
    assert_eq!(
        container["lifecycle"]["preStop"]["exec"]["command"][0],
        "/bin/drain"
    );
}

#[test]
fn kubectl_scale_is_checked() {
    let plane = cluster();
    let ns = namespace(plane, "scale", true);
    assert!(apply(plane, &ns, &common::read("examples/ratis-app.yaml"), &[]).0);
    let scale = |n: &str| {
        run(
            plane,
            &[
                "scale",
                "-n",
                &ns,
                "statefulset/counter",
                &format!("--replicas={n}"),
            ],
            None,
        )
    };

    let (ok, _, stderr) = scale("4");
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "denied the request: StatefulSet {ns}/counter: spec.replicas is 4; a Raft cluster of 4"
        )),
        "{stderr}"
    );
    let (ok, _, stderr) = scale("5");
    assert!(ok, "{stderr}");
    assert_eq!(statefulset(plane, &ns, "counter")["spec"]["replicas"], 5);
    let (ok, _, stderr) = scale("7");
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = scale("1");
    assert!(!ok);
    assert!(
        stderr.contains("spec.replicas goes from 7 to 1, removing 6 members in one step"),
        "{stderr}"
    );
    assert!(stderr.contains("(7→5→3→1)"), "{stderr}");
    // Stopping while the volumes go with the pods is denied, and no stop warning is shown.
    let (ok, _, stderr) = scale("0");
    assert!(!ok);
    assert!(
        stderr.contains("whenScaled is Delete") && !stderr.contains("Warning:"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(
        plane,
        &[
            "patch",
            "-n",
            &ns,
            "statefulset/counter",
            "--type=merge",
            "-p",
            r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Retain"}}}"#,
        ],
        None,
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = scale("0");
    assert!(ok, "scaling to 0 stops the cluster: {stderr}");
    assert!(
        stderr.contains("Warning: StatefulSet") && stderr.contains("spec.replicas is 0"),
        "{stderr}"
    );
    assert_eq!(statefulset(plane, &ns, "counter")["spec"]["replicas"], 0);
}

#[test]
fn server_dry_run_injects_and_stores_nothing() {
    let plane = cluster();
    let ns = namespace(plane, "dryrun", true);
    let (ok, stdout, stderr) = apply(
        plane,
        &ns,
        &common::read("examples/etcd.yaml"),
        &["--dry-run=server", "-o", "json"],
    );
    assert!(ok, "{stderr}");
    let list: Value = serde_json::from_str(&stdout).expect("JSON");
    let sts = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "StatefulSet")
        .expect("the StatefulSet");
    assert!(is_injected(sts), "the dry run shows the injected object");
    assert!(get(plane, &ns, "statefulset/etcd").is_none());
    assert!(get(plane, &ns, "service/etcd").is_none());
}

#[test]
fn reapplying_the_same_manifest_creates_no_new_revision() {
    let plane = cluster();
    for (mode, extra) in [("client", &[][..]), ("server", &["--server-side"][..])] {
        let ns = namespace(plane, &format!("reapply-{mode}"), true);
        let manifest = common::read("examples/etcd.yaml");
        let (ok, _, stderr) = apply(plane, &ns, &manifest, extra);
        assert!(ok, "{mode}: {stderr}");
        let before = revisions(plane, &ns, "etcd");
        let template = statefulset(plane, &ns, "etcd")["spec"]["template"].clone();
        assert_eq!(before.0.len(), 1, "{mode}");
        for _ in 0..2 {
            let (ok, _, stderr) = apply(plane, &ns, &manifest, extra);
            assert!(ok, "{mode}: {stderr}");
        }
        assert_eq!(
            revisions(plane, &ns, "etcd"),
            before,
            "{mode}: a re-apply rolled the pods"
        );
        assert_eq!(
            statefulset(plane, &ns, "etcd")["spec"]["template"],
            template,
            "{mode}"
        );
    }
}

#[test]
fn changing_only_replicas_keeps_the_template() {
    let plane = cluster();
    for (mode, extra) in [("client", &[][..]), ("server", &["--server-side"][..])] {
        let ns = namespace(plane, &format!("replicas-{mode}"), true);
        let manifest = common::read("examples/etcd.yaml");
        assert!(apply(plane, &ns, &manifest, extra).0);
        let before = statefulset(plane, &ns, "etcd");
        let revisions_before = revisions(plane, &ns, "etcd");
        let (ok, _, stderr) = apply(
            plane,
            &ns,
            &manifest.replace("replicas: 3", "replicas: 5"),
            extra,
        );
        assert!(ok, "{mode}: {stderr}");
        let after = statefulset(plane, &ns, "etcd");
        assert_eq!(after["spec"]["replicas"], 5);
        assert_eq!(
            after["spec"]["template"], before["spec"]["template"],
            "{mode}: the template changed"
        );
        assert_eq!(revisions(plane, &ns, "etcd"), revisions_before, "{mode}");
        let peers = after["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "RAFT_CLUSTER_SIZE")
            .cloned()
            .unwrap();
        assert_eq!(
            peers["value"], "3",
            "{mode}: the bootstrap size stays frozen"
        );
    }
}

#[test]
fn pods_created_by_the_statefulset_controller_carry_the_injection() {
    let plane = cluster();
    let ns = namespace(plane, "pods", true);
    assert!(apply(plane, &ns, &common::read("examples/etcd.yaml"), &[]).0);
    let pod = eventually(60, || get(plane, &ns, "pod/etcd-2"))
        .expect("the statefulset controller creates etcd-2");
    assert_eq!(
        pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "2",
        "RAFT_ORDINAL's source label"
    );
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    let names = env_names(container);
    for wanted in [
        "POD_NAME",
        "RAFT_ORDINAL",
        "RAFT_ID",
        "RAFT_PEERS",
        "ETCD_INITIAL_CLUSTER",
        "ETCD_ADVERTISE_CLIENT_URLS",
    ] {
        assert!(
            names.contains(&wanted.to_owned()),
            "{wanted} missing from {names:?}"
        );
    }
    assert_eq!(spec["initContainers"][0]["name"], "raft-injector");
    assert_eq!(
        spec["initContainers"][0]["image"],
        "registry.example/raft-injector:e2e"
    );
    assert!(spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "raft-injector" && v["emptyDir"].is_object()));
    assert_eq!(
        container["lifecycle"]["preStop"]["exec"]["command"][2],
        "leave"
    );
}

#[test]
fn shipped_manifests_are_accepted_by_the_api_server() {
    let plane = cluster();
    let (ok, _, stderr) = run(
        plane,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: raft-injector\n"),
    );
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = run(
        plane,
        &["apply", "--dry-run=server", "-k", &file("manifests")],
        None,
    );
    assert!(ok, "{stderr}");
    for kind in [
        "deployment.apps/raft-injector",
        "poddisruptionbudget.policy/raft-injector",
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        assert!(stdout.contains(kind), "{kind} missing: {stdout}");
    }
}

/// The value of a metric line that starts with `prefix`, summed over its matches.
fn metric_sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn hostile_replica_counts_are_denied_everywhere_and_the_webhook_stays_up() {
    let plane = cluster();
    let webhook = common::controlplane::webhook();
    let pid = webhook.server_pid();
    let ns = namespace(plane, "bounds", true);
    let example = common::read("examples/etcd.yaml");
    let with = |replicas: &str| {
        let manifest = example.replace("replicas: 3", &format!("replicas: {replicas}"));
        assert_ne!(manifest, example);
        manifest
    };
    let hostile = ["2147483647", "99999", "-1", "100"];
    let says_why = |stderr: &str, replicas: &str| {
        // Ours for the large counts; for a negative one the API server's own validation
        // may speak first (it runs between the mutating and the validating webhooks).
        stderr.contains(&format!("spec.replicas is {replicas}"))
            || (replicas.starts_with('-') && stderr.contains("spec.replicas: Invalid value: -1"))
    };

    // CREATE.
    for replicas in hostile {
        let (ok, _, stderr) = apply(plane, &ns, &with(replicas), &[]);
        assert!(!ok, "replicas {replicas} was created");
        assert!(says_why(&stderr, replicas), "{replicas}: {stderr}");
        assert!(stderr.len() < 4096, "{} bytes: {stderr:.500}", stderr.len());
        assert!(get(plane, &ns, "statefulset/etcd").is_none());
    }
    // UPDATE of a healthy cluster.
    let (ok, _, stderr) = apply(plane, &ns, &example, &[]);
    assert!(ok, "{stderr}");
    for replicas in hostile {
        let (ok, _, stderr) = apply(plane, &ns, &with(replicas), &[]);
        assert!(!ok, "update to {replicas} was stored");
        assert!(says_why(&stderr, replicas), "{replicas}: {stderr}");
        assert_eq!(statefulset(plane, &ns, "etcd")["spec"]["replicas"], 3);
    }
    // The scale subresource, through kubectl scale and a raw patch of statefulsets/scale.
    for replicas in ["2147483647", "99999", "100"] {
        let (ok, _, stderr) = run(
            plane,
            &[
                "scale",
                "-n",
                &ns,
                "statefulset/etcd",
                &format!("--replicas={replicas}"),
            ],
            None,
        );
        assert!(!ok, "scale to {replicas} was allowed");
        assert!(
            stderr.contains("scale.raft-injector.io") && says_why(&stderr, replicas),
            "{replicas}: {stderr}"
        );
    }
    for replicas in hostile {
        let patch = format!(r#"{{"spec":{{"replicas":{replicas}}}}}"#);
        let (ok, _, stderr) = run(
            plane,
            &[
                "patch",
                "-n",
                &ns,
                "statefulset/etcd",
                "--subresource=scale",
                "--type=merge",
                "-p",
                &patch,
            ],
            None,
        );
        assert!(!ok, "scale patch to {replicas} was allowed");
        assert!(says_why(&stderr, replicas), "{replicas}: {stderr}");
        assert_eq!(statefulset(plane, &ns, "etcd")["spec"]["replicas"], 3);
    }
    // Scale-up by more than two at once, and the allowed step.
    let (ok, _, stderr) = run(
        plane,
        &["scale", "-n", &ns, "statefulset/etcd", "--replicas=7"],
        None,
    );
    assert!(
        !ok && stderr.contains("adding 4 members in one step"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(
        plane,
        &["scale", "-n", &ns, "statefulset/etcd", "--replicas=5"],
        None,
    );
    assert!(ok, "{stderr}");

    assert_eq!(webhook.server_pid(), pid, "the webhook never restarted");
    let rss = webhook.rss_kib();
    assert!(rss < 64 * 1024, "webhook RSS is {rss} KiB");
    eprintln!("webhook RSS after the hostile requests: {rss} KiB");
    let metrics = webhook.metrics();
    let all = metric_sum(&metrics, "raft_injector_admission_response_bytes_count");
    let small = metric_sum(
        &metrics,
        "raft_injector_admission_response_bytes_bucket{le=\"65536.0\"",
    );
    assert!(all > 0.0, "{metrics}");
    assert_eq!(
        small, all,
        "every response body is under 64 KiB:\n{metrics}"
    );
}

#[test]
fn set_env_over_an_injected_variable_warns_and_a_flavor_change_is_denied() {
    let plane = cluster();
    let ns = namespace(plane, "frozen", true);
    let (ok, _, stderr) = apply(plane, &ns, &common::read("examples/etcd.yaml"), &[]);
    assert!(ok, "{stderr}");
    let status_before = statefulset(plane, &ns, "etcd")["metadata"]["annotations"]
        ["raft-injector.io/status"]
        .clone();

    let (ok, _, stderr) = run(
        plane,
        &[
            "set",
            "env",
            "-n",
            &ns,
            "statefulset/etcd",
            "RAFT_PEERS=elsewhere:2380",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("Warning: StatefulSet")
            && stderr.contains("has env RAFT_PEERS = \"elsewhere:2380\""),
        "{stderr}"
    );

    let (ok, _, stderr) = run(
        plane,
        &[
            "annotate",
            "-n",
            &ns,
            "statefulset/etcd",
            "--overwrite",
            "raft-injector.io/flavor=generic",
        ],
        None,
    );
    assert!(!ok, "the flavor change was stored");
    assert!(stderr.contains("was injected for \"etcd\""), "{stderr}");
    let sts = statefulset(plane, &ns, "etcd");
    assert_eq!(
        sts["metadata"]["annotations"]["raft-injector.io/flavor"],
        "etcd"
    );
    assert_eq!(
        sts["metadata"]["annotations"]["raft-injector.io/status"], status_before,
        "the status annotation still describes what is injected"
    );
}

/// Argo CD and Flux delete in any order. Once the Service is gone, the StatefulSet no
/// longer passes the rules, but its deletion must still finish: garbage collection removes
/// the orphan or foreground finalizer with an UPDATE of the object being deleted.
#[test]
fn a_statefulset_deleted_after_its_service_finishes_deleting() {
    let plane = cluster();
    for cascade in ["orphan", "foreground"] {
        let ns = namespace(plane, &format!("delete-{cascade}"), true);
        let (ok, _, stderr) = apply(plane, &ns, &common::read("examples/etcd.yaml"), &[]);
        assert!(ok, "{cascade}: {stderr}");
        assert!(is_injected(&statefulset(plane, &ns, "etcd")));
        let (ok, _, stderr) = run(plane, &["delete", "-n", &ns, "service/etcd"], None);
        assert!(ok, "{cascade}: {stderr}");
        // The rules now deny an edit (the Service is missing), so the finalizer UPDATE
        // below is what the exemption lets through.
        // (The webhook's Service cache follows the deletion within moments.)
        let mut attempt = 0;
        let denied = eventually(20, || {
            attempt += 1;
            let label = format!("edited={attempt}");
            let (ok, _, stderr) = run(
                plane,
                &[
                    "label",
                    "--overwrite",
                    "-n",
                    &ns,
                    "statefulset/etcd",
                    &label,
                ],
                None,
            );
            (!ok && stderr.contains("denied")).then_some(())
        });
        assert!(
            denied.is_some(),
            "{cascade}: an edit without the Service is denied"
        );
        let started = std::time::Instant::now();
        let (ok, _, stderr) = run(
            plane,
            &[
                "delete",
                "-n",
                &ns,
                "statefulset/etcd",
                &format!("--cascade={cascade}"),
                "--wait=false",
            ],
            None,
        );
        assert!(ok, "{cascade}: {stderr}");
        let gone = eventually(90, || {
            get(plane, &ns, "statefulset/etcd").is_none().then_some(())
        });
        assert!(
            gone.is_some(),
            "{cascade}: the StatefulSet is still there after 90 s: {:#}",
            statefulset(plane, &ns, "etcd")["metadata"]
        );
        eprintln!(
            "--cascade={cascade} after the Service: gone in {:?}",
            started.elapsed()
        );
    }
}
