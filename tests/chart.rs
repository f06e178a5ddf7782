//! The Helm chart (`charts/raft-injector`) with the real `helm` binary, built from its Go
//! module by `scripts/helm.sh`: `helm lint` is clean, the defaults render exactly the objects
//! of `kubectl kustomize manifests` (and the cert-manager mode those of
//! `manifests/cert-manager`), apart from Helm's own labels and the Namespace, a typo in
//! values is an error, and the default (managed) mode renders no certificate, the same every time.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

fn chart() -> String {
    common::root()
        .join("charts/raft-injector")
        .display()
        .to_string()
}

/// (success, stdout, stderr) of a command.
fn output(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn template(extra: &[&str]) -> Result<String, String> {
    let chart = chart();
    let mut args = vec![
        "template",
        "raft-injector",
        &chart,
        "--namespace",
        "raft-injector",
        // helm template assumes Kubernetes 1.20 unless told; the chart needs 1.29.
        "--kube-version",
        "1.32.4",
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = output(common::helm(), &args);
    if ok {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

/// Objects by `Kind/namespace/name`, with Helm's bookkeeping labels taken out.
fn objects(name: &str, yaml: &str) -> BTreeMap<String, Value> {
    let docs = raft_injector::offline::documents::parse(name, yaml).expect("the YAML parses");
    let mut out = BTreeMap::new();
    for mut doc in docs.into_iter().filter_map(|d| d.value) {
        if let Some(labels) = doc
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            for helm_label in [
                "helm.sh/chart",
                "app.kubernetes.io/managed-by",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/version",
            ] {
                labels.remove(helm_label);
            }
        }
        let key = format!(
            "{}/{}/{}",
            doc["kind"].as_str().unwrap_or_default(),
            doc["metadata"]["namespace"].as_str().unwrap_or_default(),
            doc["metadata"]["name"].as_str().unwrap_or_default()
        );
        out.insert(key, doc);
    }
    out
}

fn kustomize(dir: &str) -> BTreeMap<String, Value> {
    let path = common::root().join(dir).display().to_string();
    let (ok, stdout, stderr) = output("kubectl", &["kustomize", &path]);
    assert!(ok, "kubectl kustomize {dir}: {stderr}");
    let mut objects = objects(dir, &stdout);
    // `helm install --create-namespace` makes the namespace; the chart does not own it.
    objects.retain(|key, _| !key.starts_with("Namespace/"));
    objects
}

fn assert_same(chart: &BTreeMap<String, Value>, manifests: &BTreeMap<String, Value>) {
    let chart_keys: Vec<&String> = chart.keys().collect();
    let manifest_keys: Vec<&String> = manifests.keys().collect();
    assert_eq!(chart_keys, manifest_keys, "the same objects");
    for (key, object) in manifests {
        assert_eq!(
            &chart[key], object,
            "{key} differs between the chart and the manifests"
        );
    }
}

#[test]
fn the_chart_lints_clean() {
    let (ok, stdout, stderr) = output(common::helm(), &["lint", "--strict", &chart()]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("0 chart(s) failed"), "{stdout}");
}

#[test]
fn defaults_render_the_kustomize_manifests() {
    let rendered = objects("chart", &template(&[]).expect("renders"));
    assert_same(&rendered, &kustomize("manifests"));
}

#[test]
fn cert_manager_mode_renders_the_cert_manager_manifests() {
    let rendered = template(&["--set", "certs.mode=certManager"]).expect("renders");
    assert_same(
        &objects("chart", &rendered),
        &kustomize("manifests/cert-manager"),
    );
}

#[test]
fn a_typo_or_a_bad_value_is_an_error() {
    let error = template(&["--set", "image.tagg=1.0"]).expect_err("a typo is refused");
    assert!(
        error.contains("tagg") && error.contains("additional properties"),
        "{error}"
    );
    let error = template(&["--set", "certs.mode=selfsigned"]).expect_err("an unknown mode");
    assert!(
        error.contains("certs.mode") || error.contains("mode"),
        "{error}"
    );
    let error = template(&["--set", "webhook.failurePolicy=fail"]).expect_err("case matters");
    assert!(error.contains("failurePolicy"), "{error}");
}

/// Installs that would work against themselves are refused at render time.
#[test]
fn a_lone_replica_under_a_pdb_and_a_policy_without_the_apiserver_are_refused() {
    let error = template(&["--set", "replicaCount=1"]).expect_err("1 replica with a PDB");
    assert!(error.contains("replicaCount"), "{error}");
    template(&[
        "--set",
        "replicaCount=1",
        "--set",
        "podDisruptionBudget.enabled=false",
    ])
    .expect("one replica without a PDB renders");
    let error = template(&["--set", "networkPolicy.enabled=true"])
        .expect_err("a NetworkPolicy must say where kube-apiserver calls from");
    assert!(error.contains("webhookFrom"), "{error}");
}

/// The NetworkPolicy (off by default) admits the webhook port from the given peers only,
/// the metrics port from the given peers or anywhere. The local cluster's CNI (bridge)
/// does not enforce NetworkPolicies, so this checks the rendered object.
#[test]
fn the_network_policy_admits_only_the_given_sources() {
    let defaults = objects("chart", &template(&[]).unwrap());
    assert!(
        !defaults.keys().any(|k| k.starts_with("NetworkPolicy/")),
        "off by default"
    );
    let rendered = objects(
        "chart",
        &template(&[
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "networkPolicy.webhookFrom[0].ipBlock.cidr=10.0.0.0/24",
            "--set",
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
        ])
        .unwrap(),
    );
    let policy = &rendered["NetworkPolicy/raft-injector/raft-injector"];
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "raft-injector"
    );
    let ingress = policy["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 2, "{policy:#}");
    assert_eq!(ingress[0]["ports"][0]["port"], 8443);
    assert_eq!(
        ingress[0]["from"],
        serde_json::json!([{"ipBlock": {"cidr": "10.0.0.0/24"}}])
    );
    assert_eq!(ingress[1]["ports"][0]["port"], 9090);
    assert_eq!(
        ingress[1]["from"][0]["namespaceSelector"]["matchLabels"]["team"],
        "monitoring"
    );
}

/// The CA is a long-lived root that keeps its key; only the serving certificate rotates.
#[test]
fn the_cert_manager_ca_is_long_lived_and_keeps_its_key() {
    for (name, text) in [
        (
            "chart",
            template(&["--set", "certs.mode=certManager"]).unwrap(),
        ),
        (
            "kustomize",
            common::read("manifests/cert-manager/certificate.yaml"),
        ),
    ] {
        let rendered = objects(name, &text);
        let ca = rendered
            .iter()
            .find(|(k, _)| k.starts_with("Certificate/") && k.ends_with("/raft-injector-ca"))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{name}: the CA Certificate"));
        assert_eq!(
            ca["spec"]["privateKey"]["rotationPolicy"], "Never",
            "{name}"
        );
        assert_eq!(ca["spec"]["duration"], "87600h", "{name}");
        let leaf = rendered
            .iter()
            .find(|(k, _)| k.starts_with("Certificate/") && k.ends_with("/raft-injector-tls"))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{name}: the serving Certificate"));
        assert_eq!(
            leaf["spec"]["privateKey"]["rotationPolicy"], "Always",
            "{name}"
        );
    }
}

#[test]
fn values_reach_the_objects() {
    let rendered = objects(
        "chart",
        &template(&[
            "--set",
            "replicaCount=3",
            "--set",
            "image.tag=9.9.9",
            "--set",
            "config.missingService=warn",
            "--set",
            "config.maxReplicas=9",
            "--set",
            "webhook.timeoutSeconds=10",
            "--set",
            "podDisruptionBudget.enabled=false",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ])
        .expect("renders"),
    );
    let deployment = &rendered["Deployment/raft-injector/raft-injector"];
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "ghcr.io/raft-injector/raft-injector:9.9.9"
    );
    let env: BTreeMap<&str, &str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["value"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(env["RAFT_INJECTOR_MISSING_SERVICE"], "warn");
    assert_eq!(env["RAFT_INJECTOR_MAX_REPLICAS"], "9");
    assert_eq!(
        env["RAFT_INJECTOR_HELPER_IMAGE"],
        "ghcr.io/raft-injector/raft-injector:9.9.9"
    );
    let webhooks = &rendered["ValidatingWebhookConfiguration//raft-injector"]["webhooks"];
    assert!(webhooks
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["timeoutSeconds"] == 10));
    assert!(!rendered.contains_key("PodDisruptionBudget/raft-injector/raft-injector"));
    assert!(rendered.contains_key("ServiceMonitor/raft-injector/raft-injector"));
}

/// The default (managed) install renders no certificate at all, so every render is the same
/// (Argo CD shows no diff); the webhook gets the RBAC for its own Secret and configurations.
#[test]
fn the_default_install_renders_no_certificate_and_the_same_every_time() {
    let first = template(&[]).expect("renders");
    let second = template(&[]).expect("renders");
    assert_eq!(first, second, "two renders differ");
    let rendered = objects("chart", &first);
    assert!(
        !rendered.keys().any(|k| k.starts_with("Secret/")),
        "no Secret is rendered: {:?}",
        rendered.keys().collect::<Vec<_>>()
    );
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        for hook in rendered[&format!("{kind}//raft-injector")]["webhooks"]
            .as_array()
            .unwrap()
        {
            assert!(
                hook["clientConfig"].get("caBundle").is_none(),
                "{kind}: the webhook sets caBundle, the chart must not"
            );
        }
    }
    let role = &rendered["Role/raft-injector/raft-injector-certs"];
    assert_eq!(role["rules"][0]["resourceNames"][0], "raft-injector-tls");
    let deployment = &rendered["Deployment/raft-injector/raft-injector"];
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(pod.get("volumes").is_none(), "nothing mounted: {pod}");
    let env = pod["containers"][0]["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "RAFT_INJECTOR_CERT_SECRET" && e["value"] == "raft-injector-tls"));
    // The other modes mount the Secret and get no such RBAC.
    for mode in ["certs.mode=external", "certs.mode=certManager"] {
        let other = objects("chart", &template(&["--set", mode]).expect("renders"));
        assert!(
            !other.contains_key("Role/raft-injector/raft-injector-certs"),
            "{mode}"
        );
        let pod = &other["Deployment/raft-injector/raft-injector"]["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["secret"]["secretName"], "raft-injector-tls",
            "{mode}"
        );
    }
}

#[test]
fn the_external_mode_renders_the_external_manifests() {
    let rendered = objects(
        "chart",
        &template(&["--set", "certs.mode=external"]).expect("renders"),
    );
    assert_same(&rendered, &kustomize("manifests/external"));
}

/// Release references: the chart's `image.digest` and `scripts/release-manifests.sh` write
/// the webhook image and the helper image as tag@digest in every variant, and the
/// Dockerfile's build image is pinned by digest.
#[test]
fn release_references_pin_images_by_tag_and_digest() {
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let pinned = format!("ghcr.io/raft-injector/raft-injector:0.1.0@{digest}");
    let rendered = objects(
        "chart",
        &template(&["--set", &format!("image.digest={digest}")]).expect("renders"),
    );
    let container = &rendered["Deployment/raft-injector/raft-injector"]["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(container["image"], pinned.as_str());
    let helper = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "RAFT_INJECTOR_HELPER_IMAGE")
        .unwrap();
    assert_eq!(helper["value"], pinned.as_str());
    let error = template(&["--set", "image.digest=latest"]).expect_err("not a digest");
    assert!(error.contains("digest"), "{error}");

    for variant in ["manifests", "manifests/external", "manifests/cert-manager"] {
        let out = Command::new(common::root().join("scripts/release-manifests.sh"))
            .args([&digest, variant])
            .output()
            .expect("the script runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let references: Vec<&str> = text
            .match_indices("ghcr.io/raft-injector/raft-injector")
            .map(|(at, _)| text[at..].split_whitespace().next().unwrap())
            .collect();
        assert_eq!(references.len(), 2, "{variant}: image and helper image");
        assert!(
            references.iter().all(|r| *r == pinned),
            "{variant}: {references:?}"
        );
        // Still the same objects otherwise (kustomize() leaves the Namespace out).
        let mut released = objects(variant, &text);
        released.retain(|key, _| !key.starts_with("Namespace/"));
        assert_eq!(
            released.keys().collect::<Vec<_>>(),
            kustomize(variant).keys().collect::<Vec<_>>()
        );
    }
    let refused = Command::new(common::root().join("scripts/release-manifests.sh"))
        .arg("0.1.0")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a tag is not a digest");

    let dockerfile = common::read("Dockerfile");
    for line in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        let image = line.split_whitespace().nth(1).unwrap();
        assert!(
            image == "scratch" || image.contains("@sha256:"),
            "{line}: pin the build image by digest"
        );
    }
}
