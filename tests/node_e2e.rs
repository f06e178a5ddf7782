//! On the local cluster's real node: raft-injector installed in-cluster the way the README
//! says (the image built from the Dockerfile, the kustomize manifests, which make the webhook keep its own certificates;
//! `run.sh install`), and `examples/etcd.yaml` applied unchanged. Pods really start: the
//! init containers copy and run the helper, peers find each other through the headless
//! Service's DNS, the helper reads the StatefulSet with the pod's service-account token, and
//! kubelet runs `member leave` as the preStop hook.
//!
//! Every wait has a deadline; on failure the test prints the pods, their events and logs.

mod common;

use common::controlplane::{get, namespace, run};
use common::node::*;
use serde_json::Value;

#[test]
fn the_webhook_runs_in_cluster_behind_its_service() {
    let plane = installed();
    let deployment = get(plane, "raft-injector", "deployment/raft-injector").expect("Deployment");
    assert_eq!(deployment["status"]["readyReplicas"], 2, "{deployment:#}");
    let pod_image = &deployment["spec"]["template"]["spec"]["containers"][0]["image"];
    assert_eq!(pod_image, "ghcr.io/raft-injector/raft-injector:0.1.0");
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let config = get(plane, "", &format!("{kind}/raft-injector")).expect(kind);
        for hook in config["webhooks"].as_array().unwrap() {
            let client = &hook["clientConfig"];
            assert!(client["url"].is_null(), "{kind} still uses a URL: {client}");
            assert_eq!(client["service"]["name"], "raft-injector", "{client}");
            assert_eq!(client["service"]["namespace"], "raft-injector", "{client}");
        }
    }
    let pdb = get(plane, "raft-injector", "pdb/raft-injector").expect("PodDisruptionBudget");
    assert_eq!(pdb["status"]["currentHealthy"], 2, "{pdb:#}");

    // `raft-injector check` finds nothing wrong with the kustomize install either (the chart
    // install is checked step by step in tests/chart_install.rs).
    let ns = namespace(plane, "check", true);
    // Right after an install a replaced pod may still be listed (a warning); wait it out.
    let check = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_raft-injector"))
            .args(["check", "-n", &ns, "-o", "json"])
            .env("KUBECONFIG", &plane.kubeconfig)
            .output()
            .expect("raft-injector check runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (out.status.success(), report)
    };
    let all_pass = |report: &Value| {
        let installation: Vec<&Value> = report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["group"] == "raft-injector installation")
            .collect();
        installation.len() == 8 && installation.iter().all(|c| c["outcome"] == "pass")
    };
    let mut last = Value::Null;
    let passed = common::controlplane::eventually(60, || {
        let (ok, report) = check();
        let done = ok && all_pass(&report);
        last = report;
        done.then_some(())
    });
    assert!(
        passed.is_some(),
        "check did not pass every installation check within 60 s:\n{last:#}"
    );
    assert!(
        last["checks"].as_array().unwrap().iter().any(|c| c["name"]
            .as_str()
            .unwrap()
            .contains("serves a certificate the caBundles trust for raft-injector.raft-injector.svc (2 pods)")),
        "{last:#}"
    );
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}

#[test]
fn the_etcd_example_forms_a_cluster_and_its_membership_follows_replicas() {
    let plane = installed();
    let ns = namespace(plane, "etcd", true);
    let (ok, _, stderr) = run(
        plane,
        &[
            "apply",
            "-n",
            &ns,
            "-f",
            &common::controlplane::file("examples/etcd.yaml"),
        ],
        None,
    );
    assert!(ok, "{stderr}");
    wait_ready(plane, &ns, &["etcd-0", "etcd-1", "etcd-2"]);

    // No entrypoint script: the container runs the helper's exec wrapper, then etcd.
    let pod = get(plane, &ns, "pod/etcd-0").unwrap();
    let container = &pod["spec"]["containers"][0];
    let command: Vec<&str> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(command.last(), Some(&"/usr/local/bin/etcd"), "{command:?}");
    assert!(command[0].starts_with("/raft-injector/"), "{command:?}");
    let env_names: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(!env_names.contains(&"KUBECONFIG"), "{env_names:?}");

    // Bootstrap: three started members, the same list from every member.
    let all = ["etcd-0", "etcd-1", "etcd-2"];
    let initial = wait_members(plane, &ns, &all, &all);
    let status = exec(
        plane,
        &ns,
        "etcd-1",
        &["etcdctl", "endpoint", "status", "--cluster", "-w", "json"],
    )
    .unwrap();
    let status: Value = serde_json::from_str(&status).unwrap();
    let leaders: Vec<_> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Status"]["leader"].clone())
        .collect();
    assert_eq!(leaders.len(), 3, "{status:#}");
    assert!(
        leaders.iter().all(|l| *l == leaders[0]),
        "one leader: {status:#}"
    );

    // A key written through one member is read through another.
    exec(
        plane,
        &ns,
        "etcd-0",
        &["etcdctl", "put", "/raft-injector/e2e", "written-on-0"],
    )
    .unwrap();
    let read = exec(
        plane,
        &ns,
        "etcd-2",
        &["etcdctl", "get", "--print-value-only", "/raft-injector/e2e"],
    );
    assert_eq!(read.unwrap().trim(), "written-on-0");

    // `member status` through kubectl exec: this member's view and its stop decision.
    let text = exec(
        plane,
        &ns,
        "etcd-2",
        &["/raft-injector/raft-injector", "member", "status"],
    )
    .unwrap_or_else(|e| panic!("member status: {e}\n{}", report(plane, &ns)));
    assert!(text.contains("member    etcd-2 (id "), "{text}");
    assert!(text.contains("3 members, leader etcd-"), "{text}");
    assert!(
        text.contains("on stop   keeps its membership: ordinal 2 is below spec.replicas 3"),
        "{text}"
    );
    let json = exec(
        plane,
        &ns,
        "etcd-0",
        &[
            "/raft-injector/raft-injector",
            "member",
            "status",
            "-o",
            "json",
        ],
    )
    .unwrap();
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        json["members"].as_array().map(Vec::len),
        Some(3),
        "{json:#}"
    );
    assert_eq!(
        json["id"].as_str(),
        Some(initial["etcd-0"].as_str()),
        "{json:#}"
    );
    assert_eq!(json["problems"], serde_json::json!([]), "{json:#}");

    // Each decision is an Event, written with the pod's service-account token.
    for pod in all {
        wait_event(plane, &ns, "MemberBootstrapping", pod);
    }

    // 3 → 5: ordinals 3 and 4 are added, one at a time; the first three keep their IDs.
    scale(plane, &ns, 5);
    let five = ["etcd-0", "etcd-1", "etcd-2", "etcd-3", "etcd-4"];
    wait_ready(plane, &ns, &five);
    let grown = wait_members(plane, &ns, &five, &five);
    for name in all {
        assert_eq!(grown[name], initial[name], "{name} kept its member ID");
    }
    for pod in ["etcd-3", "etcd-4"] {
        let message = wait_event(plane, &ns, "MemberJoined", pod);
        assert!(
            message.contains("is beyond the bootstrap set of 3)")
                && message.contains("initial cluster"),
            "{message}"
        );
    }
    let (_, restarts, _) = run(
        plane,
        &[
            "get",
            "pods",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].status.containerStatuses[0].restartCount}",
        ],
        None,
    );
    assert!(
        restarts.split_whitespace().all(|n| n == "0"),
        "no member crashed while joining: restarts {restarts}\n{}",
        report(plane, &ns)
    );

    // 5 → 3: the preStop hook removes exactly ordinals 3 and 4, and their volumes go.
    scale(plane, &ns, 3);
    wait_ready(plane, &ns, &all);
    let shrunk = wait_members(plane, &ns, &all, &all);
    assert_eq!(
        shrunk, initial,
        "the remaining members are the original ones"
    );
    for pod in ["etcd-3", "etcd-4"] {
        let message = wait_event(plane, &ns, "MemberRemoved", pod);
        assert!(message.contains("spec.replicas 3"), "{message}");
    }
    wait(
        plane,
        &ns,
        120,
        "the scaled-away PVCs were not deleted",
        || {
            let list = get(plane, &ns, "pvc")?;
            let mut claims: Vec<&str> = list["items"]
                .as_array()?
                .iter()
                .filter_map(|c| c["metadata"]["name"].as_str())
                .collect();
            claims.sort();
            (claims == ["data-etcd-0", "data-etcd-1", "data-etcd-2"]).then_some(())
        },
    );
    let read = exec(
        plane,
        &ns,
        "etcd-1",
        &["etcdctl", "get", "--print-value-only", "/raft-injector/e2e"],
    );
    assert_eq!(
        read.unwrap().trim(),
        "written-on-0",
        "the key survived 3→5→3"
    );

    // A deleted pod is a restart: the membership stays, and the Event says why.
    let old_uid = pod_uid(plane, &ns, "etcd-1");
    let (ok, _, stderr) = run(
        plane,
        &["delete", "pod", "-n", &ns, "etcd-1", "--wait=false"],
        None,
    );
    assert!(ok, "{stderr}");
    let kept = wait_event(plane, &ns, "MemberKept", "etcd-1");
    assert!(kept.contains("below spec.replicas 3"), "{kept}");
    wait_replaced(plane, &ns, "etcd-1", &old_uid);
    wait_ready(plane, &ns, &all);
    assert_eq!(
        wait_members(plane, &ns, &all, &all),
        initial,
        "a restart changes no member"
    );
    let resumed = wait_event(plane, &ns, "MemberResumed", "etcd-1");
    assert!(resumed.contains("resumes"), "{resumed}");

    // kubectl logs shows the helper's decisions too.
    let (ok, logs, stderr) = run(
        plane,
        &["logs", "-n", &ns, "etcd-1", "-c", "raft-injector-join"],
        None,
    );
    assert!(ok && logs.contains("member join"), "{logs}{stderr}");
    assert!(
        !logs.contains('\u{1b}'),
        "no colour codes in a container log: {logs}"
    );

    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}

/// etcd as users write it: other names, a Service named apart from the StatefulSet, etcd
/// started directly with `--data-dir` as a flag (not `ETCD_DATA_DIR`), a volume at another
/// path. A deleted pod, a rollout restart and a stop to 0 and back each keep every member
/// and its id.
const USER_SHAPED_ETCD: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: kv
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: kv-raft-member
subjects:
  - kind: ServiceAccount
    name: kv
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: raft-injector-member
---
apiVersion: v1
kind: Service
metadata:
  name: kv-peers
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    app.kubernetes.io/name: kv
  ports:
    - name: peer
      port: 2380
    - name: client
      port: 2379
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: kv
  labels:
    raft-injector.io/raft: "true"
  annotations:
    raft-injector.io/flavor: etcd
spec:
  serviceName: kv-peers
  replicas: 3
  podManagementPolicy: Parallel
  persistentVolumeClaimRetentionPolicy:
    whenScaled: Delete
    whenDeleted: Delete
  selector:
    matchLabels:
      app.kubernetes.io/name: kv
  template:
    metadata:
      labels:
        app.kubernetes.io/name: kv
    spec:
      serviceAccountName: kv
      terminationGracePeriodSeconds: 30
      containers:
        - name: etcd
          image: quay.io/coreos/etcd:v3.5.16
          command: [etcd]
          args:
            - --data-dir
            - /var/run/etcd/default.etcd
            - --auto-compaction-retention=1
          ports:
            - name: peer
              containerPort: 2380
            - name: client
              containerPort: 2379
          volumeMounts:
            - name: datadir
              mountPath: /var/run/etcd
  volumeClaimTemplates:
    - metadata:
        name: datadir
      spec:
        accessModes: ["ReadWriteOnce"]
        resources:
          requests:
            storage: 1Gi
"#;

#[test]
fn etcd_with_its_data_dir_as_a_flag_keeps_every_member_through_restarts() {
    let plane = installed();
    let ns = namespace(plane, "shaped", true);
    let (ok, _, stderr) = run(
        plane,
        &["apply", "-n", &ns, "-f", "-"],
        Some(USER_SHAPED_ETCD),
    );
    assert!(ok, "{stderr}");
    let all = ["kv-0", "kv-1", "kv-2"];
    wait_ready(plane, &ns, &all);
    let initial = wait_members(plane, &ns, &all, &all);
    let sts = get(plane, &ns, "statefulset/kv").unwrap();
    let join = sts["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "raft-injector-join")
        .cloned()
        .unwrap();
    assert!(
        join["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "RAFT_DATA_DIR" && v["value"] == "/var/run/etcd/default.etcd"),
        "the join container is told where etcd keeps its data: {join:#}"
    );
    put(plane, &ns, "kv-0", "/shaped/before", "kept");
    let same_members = |step: &str| {
        wait_ready(plane, &ns, &all);
        let now = wait_members(plane, &ns, &all, &all);
        assert_eq!(
            now,
            initial,
            "{step} changed a member\n{}",
            report(plane, &ns)
        );
        let events = helper_events(plane, &ns);
        assert!(
            !events
                .iter()
                .any(|(reason, m)| reason == "MemberJoined" || m.contains("replac")),
            "{step}: a member was replaced: {events:#?}"
        );
    };

    // A deleted pod.
    let old_uid = pod_uid(plane, &ns, "kv-1");
    let (ok, _, stderr) = run(
        plane,
        &["delete", "pod", "-n", &ns, "kv-1", "--wait=false"],
        None,
    );
    assert!(ok, "{stderr}");
    wait_replaced(plane, &ns, "kv-1", &old_uid);
    same_members("deleting pod kv-1");
    let resumed = wait_event(plane, &ns, "MemberResumed", "kv-1");
    assert!(resumed.contains("resumes"), "{resumed}");

    // An eviction (what a node drain does), through the Eviction API.
    let old_uid = pod_uid(plane, &ns, "kv-2");
    let eviction = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"kv-2","namespace":"{ns}"}}}}"#
    );
    let (ok, _, stderr) = run(
        plane,
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/{ns}/pods/kv-2/eviction"),
            "-f",
            "-",
        ],
        Some(&eviction),
    );
    assert!(ok, "eviction: {stderr}");
    wait_replaced(plane, &ns, "kv-2", &old_uid);
    same_members("evicting pod kv-2");

    // A rollout restart: every pod replaced, one at a time.
    let (ok, _, stderr) = run(
        plane,
        &["rollout", "restart", "-n", &ns, "statefulset/kv"],
        None,
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(
        plane,
        &[
            "rollout",
            "status",
            "-n",
            &ns,
            "statefulset/kv",
            "--timeout=300s",
        ],
        None,
    );
    assert!(
        ok,
        "rollout restart did not finish: {stderr}\n{}",
        report(plane, &ns)
    );
    same_members("a rollout restart");

    // Stopped (0) and started again: every member comes back from its volume. (Stopping
    // with whenScaled: Delete is denied, since it would delete every volume.)
    let (ok, _, stderr) = run(
        plane,
        &[
            "patch",
            "-n",
            &ns,
            "statefulset/kv",
            "--type=merge",
            "-p",
            r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Retain"}}}"#,
        ],
        None,
    );
    assert!(ok, "{stderr}");
    scale_statefulset(plane, &ns, "kv", 0);
    wait(plane, &ns, 120, "the pods did not stop", || {
        let list = get(plane, &ns, "pods")?;
        list["items"].as_array()?.is_empty().then_some(())
    });
    scale_statefulset(plane, &ns, "kv", 3);
    same_members("a stop to 0 and back");
    assert_eq!(
        read_key(plane, &ns, "kv-2", "/shaped/before").as_deref(),
        Some("kept")
    );
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}

/// `spec.ordinals.start: 1`: the members are kv-1..kv-3, follow 3→5→3 as 1..5 and 1..3,
/// and the highest one keeps its membership when its pod is deleted.
#[test]
fn start_ordinals_shift_every_member_and_the_scale_rules() {
    let plane = installed();
    let ns = namespace(plane, "ordinals", true);
    let manifest = USER_SHAPED_ETCD.replace(
        "  serviceName: kv-peers\n",
        "  serviceName: kv-peers\n  ordinals:\n    start: 1\n",
    );
    assert_ne!(manifest, USER_SHAPED_ETCD);
    let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    assert!(ok, "{stderr}");
    let scale = |replicas: u32| scale_statefulset(plane, &ns, "kv", replicas);
    let three = ["kv-1", "kv-2", "kv-3"];
    wait_ready(plane, &ns, &three);
    let initial = wait_members(plane, &ns, &three, &three);
    put(plane, &ns, "kv-1", "/ordinals/key", "kept");

    scale(5);
    let five = ["kv-1", "kv-2", "kv-3", "kv-4", "kv-5"];
    wait_ready(plane, &ns, &five);
    let grown = wait_members(plane, &ns, &five, &five);
    for name in three {
        assert_eq!(grown[name], initial[name], "{name} kept its member ID");
    }
    let joined = wait_event(plane, &ns, "MemberJoined", "kv-5");
    assert!(
        joined.contains("beyond the bootstrap set of 3 from ordinal 1"),
        "{joined}"
    );

    scale(3);
    wait_ready(plane, &ns, &three);
    assert_eq!(wait_members(plane, &ns, &three, &three), initial);
    let removed = wait_event(plane, &ns, "MemberRemoved", "kv-4");
    assert!(
        removed.contains("spec.ordinals.start 1 + spec.replicas 3"),
        "{removed}"
    );

    // The highest member restarting is not a scale-down.
    let old_uid = pod_uid(plane, &ns, "kv-3");
    let (ok, _, stderr) = run(
        plane,
        &["delete", "pod", "-n", &ns, "kv-3", "--wait=false"],
        None,
    );
    assert!(ok, "{stderr}");
    let kept = wait_event(plane, &ns, "MemberKept", "kv-3");
    assert!(
        kept.contains("below spec.ordinals.start 1 + spec.replicas 3"),
        "{kept}"
    );
    wait_replaced(plane, &ns, "kv-3", &old_uid);
    wait_ready(plane, &ns, &three);
    assert_eq!(wait_members(plane, &ns, &three, &three), initial);
    assert_eq!(
        read_key(plane, &ns, "kv-3", "/ordinals/key").as_deref(),
        Some("kept")
    );
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}

/// A CA and a certificate for the members of `svc` in `ns`, as cert-manager would write
/// them into a Secret (ECDSA, SEC1 key; serverAuth and clientAuth, since each member is
/// both), made with openssl.
fn member_certificates(dir: &std::path::Path, svc: &str, ns: &str) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ca.key",
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=members-ca",
        "-days",
        "2",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "tls.key",
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        "tls.key",
        "-subj",
        &format!("/CN={svc}"),
        "-out",
        "tls.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName=DNS:*.{svc}.{ns}.svc.cluster.local,DNS:*.{svc}.{ns}.svc\n\
             extendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
        ),
    )
    .unwrap();
    openssl(&[
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
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "tls.crt",
    ]);
}

/// `raft-injector.io/tls-secret`: every member URL is https with client certificates
/// required; plaintext and certificate-less clients are refused; 3→5→3 follows over TLS;
/// a key written through one member is read through another; `check` is green.
#[test]
fn etcd_with_a_tls_secret_is_https_everywhere_and_follows_scale() {
    let plane = installed();
    let ns = namespace(plane, "tls", true);
    let certs = tempfile::tempdir().unwrap();
    member_certificates(certs.path(), "kv-peers", &ns);
    let file = |name: &str| format!("--from-file={}", certs.path().join(name).display());
    let (ok, _, stderr) = run(
        plane,
        &[
            "create",
            "secret",
            "generic",
            "kv-tls",
            "-n",
            &ns,
            &file("ca.crt"),
            &file("tls.crt"),
            &file("tls.key"),
        ],
        None,
    );
    assert!(ok, "{stderr}");
    let manifest = USER_SHAPED_ETCD.replace(
        "    raft-injector.io/flavor: etcd\n",
        "    raft-injector.io/flavor: etcd\n    raft-injector.io/tls-secret: kv-tls\n",
    );
    assert_ne!(manifest, USER_SHAPED_ETCD);
    let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    assert!(ok, "{stderr}");
    let three = ["kv-0", "kv-1", "kv-2"];
    wait_ready(plane, &ns, &three);
    let initial = wait_members(plane, &ns, &three, &three);

    // Every URL the members publish is https.
    let list = exec(
        plane,
        &ns,
        "kv-0",
        &["etcdctl", "member", "list", "-w", "json"],
    )
    .unwrap();
    let list: Value = serde_json::from_str(&list).unwrap();
    for member in list["members"].as_array().unwrap() {
        for url in member["peerURLs"]
            .as_array()
            .unwrap()
            .iter()
            .chain(member["clientURLs"].as_array().unwrap())
        {
            assert!(url.as_str().unwrap().starts_with("https://"), "{member}");
        }
    }

    // From outside the pods: plaintext and certificate-less clients are refused, the
    // members' certificate is let in.
    let ip = get(plane, &ns, "pod/kv-1").unwrap()["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let curl = |args: &[&str]| {
        std::process::Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(args)
            .output()
            .map(|o| {
                (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stdout).into_owned(),
                )
            })
            .unwrap()
    };
    let plain = curl(&[&format!("http://{ip}:2379/version")]);
    assert!(
        !(plain.0 && plain.1 == "200"),
        "plaintext was answered: {plain:?}"
    );
    let ca = certs.path().join("ca.crt").display().to_string();
    let https = format!("https://{ip}:2379/version");
    let resolve = format!("kv-1.kv-peers.{ns}.svc.cluster.local:2379:{ip}");
    let named = format!("https://kv-1.kv-peers.{ns}.svc.cluster.local:2379/version");
    let anonymous = curl(&["--cacert", &ca, "--resolve", &resolve, &named]);
    assert!(
        !(anonymous.0 && anonymous.1 == "200"),
        "a client without a certificate was answered: {anonymous:?}"
    );
    let cert = certs.path().join("tls.crt").display().to_string();
    let key = certs.path().join("tls.key").display().to_string();
    let member = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--resolve",
        &resolve,
        &named,
    ]);
    assert_eq!(
        member,
        (true, "200".to_owned()),
        "the members' certificate is let in ({https})"
    );

    // A key through member 0, read through member 2; 3 → 5 → 3 over TLS.
    put(plane, &ns, "kv-0", "/tls/key", "over-tls");
    assert_eq!(
        read_key(plane, &ns, "kv-2", "/tls/key").as_deref(),
        Some("over-tls")
    );
    let scale = |replicas: u32| scale_statefulset(plane, &ns, "kv", replicas);
    scale(5);
    let five = ["kv-0", "kv-1", "kv-2", "kv-3", "kv-4"];
    wait_ready(plane, &ns, &five);
    let grown = wait_members(plane, &ns, &five, &five);
    for name in three {
        assert_eq!(grown[name], initial[name], "{name} kept its member ID");
    }
    scale(3);
    wait_ready(plane, &ns, &three);
    assert_eq!(wait_members(plane, &ns, &three, &three), initial);
    wait_event(plane, &ns, "MemberRemoved", "kv-4");
    assert_eq!(
        read_key(plane, &ns, "kv-1", "/tls/key").as_deref(),
        Some("over-tls")
    );

    // `check` reads the member list through the helper, over TLS.
    let passed = common::controlplane::eventually(60, || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_raft-injector"))
            .args(["check", "-n", &ns])
            .env("KUBECONFIG", &plane.kubeconfig)
            .output()
            .expect("raft-injector check runs");
        out.status.success().then_some(())
    });
    assert!(
        passed.is_some(),
        "check is not green\n{}",
        report(plane, &ns)
    );
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}

/// The webhook's ServiceAccount, as a compromised webhook pod would act: RBAC lets it update
/// its two webhook configurations and create Secrets in its namespace, and the shipped
/// ValidatingAdmissionPolicy narrows that to the caBundle and its own Secret. Every write is a
/// server-side dry run, so the shared cluster is left as it was.
#[test]
fn the_webhook_service_account_may_change_only_its_ca_bundle_and_its_own_secret() {
    const SA: &str = "--as=system:serviceaccount:raft-injector:raft-injector";
    let plane = installed();
    // Replaces `what` (kind/name, in namespace `ns` when set) edited by `edit`, through the
    // raw API (kubectl's own replace would also rewrite the last-applied annotation);
    // returns (accepted, what the API server said).
    let replace = |who: Option<&str>, kind: &str, name: &str, edit: &dyn Fn(&mut Value)| {
        let (path, ns) = match kind {
            "secret" => (
                format!("/api/v1/namespaces/raft-injector/secrets/{name}"),
                "raft-injector",
            ),
            _ => (
                format!("/apis/admissionregistration.k8s.io/v1/{kind}s/{name}"),
                "",
            ),
        };
        let mut object = get(plane, ns, &format!("{kind}/{name}")).expect("the object exists");
        edit(&mut object);
        let mut args = vec!["replace", "--raw"];
        let url = format!("{path}?dryRun=All");
        args.push(&url);
        args.extend(["-f", "-"]);
        args.extend(who);
        let (ok, out, err) = run(plane, &args, Some(&object.to_string()));
        (ok, format!("{out}{err}"))
    };
    let mutating = "mutatingwebhookconfiguration";
    let validating = "validatingwebhookconfiguration";
    type Edit = Box<dyn Fn(&mut Value)>;
    let denied: [(&str, &str, Edit); 7] = [
        (
            mutating,
            "failurePolicy: Ignore",
            Box::new(|o| o["webhooks"][0]["failurePolicy"] = "Ignore".into()),
        ),
        (
            mutating,
            "namespaceSelector: {}",
            Box::new(|o| o["webhooks"][0]["namespaceSelector"] = serde_json::json!({})),
        ),
        (
            mutating,
            "a second webhook",
            Box::new(|o| {
                let mut second = o["webhooks"][0].clone();
                second["name"] = "second.raft-injector.io".into();
                o["webhooks"].as_array_mut().unwrap().push(second);
            }),
        ),
        (
            mutating,
            "a cert-manager CA injection annotation",
            Box::new(|o| {
                o["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] =
                    "elsewhere/ca".into();
            }),
        ),
        (
            validating,
            "rules for every operation",
            Box::new(|o| o["webhooks"][0]["rules"][0]["operations"] = serde_json::json!(["*"])),
        ),
        (
            validating,
            "a URL instead of the Service",
            Box::new(|o| {
                o["webhooks"][0]["clientConfig"] = serde_json::json!({
                    "url": "https://10.0.0.1:8443/validate",
                    "caBundle": o["webhooks"][0]["clientConfig"]["caBundle"].clone(),
                });
            }),
        ),
        (
            validating,
            "timeoutSeconds 30",
            Box::new(|o| o["webhooks"][0]["timeoutSeconds"] = 30.into()),
        ),
    ];
    for (kind, what, edit) in &denied {
        let (ok, said) = replace(Some(SA), kind, "raft-injector", edit.as_ref());
        assert!(
            !ok && said.contains("raft-injector-own-rights") && said.contains("caBundle"),
            "the ServiceAccount changed {what} in its {kind}: {said}"
        );
        // The policy binds this ServiceAccount only: an administrator may.
        let (ok, said) = replace(None, kind, "raft-injector", edit.as_ref());
        assert!(ok, "an administrator's {what} on {kind}: {said}");
    }
    // What the webhook itself does: a new caBundle (here the old one twice), and its Secret.
    let double_bundle = |o: &mut Value| {
        for hook in o["webhooks"].as_array_mut().unwrap() {
            use base64::Engine as _;
            let engine = base64::engine::general_purpose::STANDARD;
            let pem = engine
                .decode(hook["clientConfig"]["caBundle"].as_str().unwrap())
                .unwrap();
            hook["clientConfig"]["caBundle"] = engine.encode([&pem[..], &pem[..]].concat()).into();
        }
    };
    for kind in [mutating, validating] {
        let (ok, said) = replace(Some(SA), kind, "raft-injector", &double_bundle);
        assert!(
            ok,
            "the ServiceAccount's caBundle update of its {kind}: {said}"
        );
    }
    let (ok, said) = replace(Some(SA), "secret", "raft-injector-tls", &|o| {
        o["metadata"]["annotations"]["raft-injector.io/test"] = "touched".into();
    });
    assert!(ok, "the ServiceAccount's update of its own Secret: {said}");
    let (ok, _, said) = run(
        plane,
        &[
            "create",
            "secret",
            "generic",
            "planted",
            "-n",
            "raft-injector",
            "--from-literal=k=v",
            "--dry-run=server",
            SA,
        ],
        None,
    );
    assert!(
        !ok && said.contains("raft-injector-own-rights") && said.contains("only the Secret"),
        "the ServiceAccount created another Secret: {said}"
    );
}
