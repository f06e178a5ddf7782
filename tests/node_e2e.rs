//! On the local cluster's real node: raft-injector installed in-cluster the way the README
//! says (the image built from the Dockerfile, the kustomize manifests, certs/install.sh;
//! `run.sh install`), and `examples/etcd.yaml` applied unchanged. Pods really start: the
//! init containers copy and run the helper, peers find each other through the headless
//! Service's DNS, the helper reads the StatefulSet with the pod's service-account token, and
//! kubelet runs `member leave` as the preStop hook.
//!
//! Every wait has a deadline; on failure the test prints the pods, their events and logs.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;

use common::controlplane::{control_plane, eventually, get, namespace, run, ControlPlane};
use serde_json::Value;

/// The control plane with the webhook installed in-cluster (once per test binary).
fn installed() -> &'static ControlPlane {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let plane = control_plane();
    INSTALLED.get_or_init(|| {
        common::controlplane::delete_earlier_test_namespaces(plane);
        let status = Command::new(common::root().join("tests/controlplane/run.sh"))
            .arg("install")
            .arg(&plane.dir)
            .status()
            .expect("run.sh runs");
        assert!(
            status.success(),
            "run.sh install failed; see {}/logs/install.log",
            plane.dir.display()
        );
    });
    plane
}

/// Everything a person debugging this would look at first.
fn report(plane: &ControlPlane, ns: &str) -> String {
    let mut text = String::new();
    for args in [
        vec!["get", "pods,pvc", "-o", "wide", "-n", ns],
        vec!["get", "events", "--sort-by", ".lastTimestamp", "-n", ns],
    ] {
        let (_, stdout, stderr) = run(plane, &args, None);
        text.push_str(&format!("$ kubectl {}\n{stdout}{stderr}\n", args.join(" ")));
    }
    let (_, pods, _) = run(plane, &["get", "pods", "-n", ns, "-o", "name"], None);
    for pod in pods.lines() {
        let (_, logs, stderr) = run(
            plane,
            &[
                "logs",
                "-n",
                ns,
                pod,
                "--all-containers",
                "--prefix",
                "--tail",
                "30",
            ],
            None,
        );
        text.push_str(&format!("$ kubectl logs {pod}\n{logs}{stderr}\n"));
    }
    text
}

/// Waits up to `seconds` for `check`, or fails with what the cluster looked like.
fn wait<T>(
    plane: &ControlPlane,
    ns: &str,
    seconds: u64,
    what: &str,
    check: impl FnMut() -> Option<T>,
) -> T {
    eventually(seconds, check)
        .unwrap_or_else(|| panic!("{what} within {seconds}s\n{}", report(plane, ns)))
}

/// Names of the pods of the StatefulSet that are Ready.
fn ready_pods(plane: &ControlPlane, ns: &str) -> Vec<String> {
    let Some(list) = get(plane, ns, "pods") else {
        return Vec::new();
    };
    let mut names: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .filter(|pod| {
            pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .filter_map(|pod| pod["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn wait_ready(plane: &ControlPlane, ns: &str, expected: &[&str]) {
    wait(
        plane,
        ns,
        240,
        &format!("pods {expected:?} were not Ready"),
        || (ready_pods(plane, ns) == expected).then_some(()),
    );
}

fn exec(plane: &ControlPlane, ns: &str, pod: &str, command: &[&str]) -> Result<String, String> {
    let mut args = vec!["exec", "-n", ns, pod, "-c", "etcd", "--"];
    args.extend_from_slice(command);
    let (ok, stdout, stderr) = run(plane, &args, None);
    if ok {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

/// The member list as `pod` sees it: name → ID, for started members (an unstarted
/// member has no name yet and is listed under its peer URL).
fn members(plane: &ControlPlane, ns: &str, pod: &str) -> Option<BTreeMap<String, String>> {
    let out = exec(
        plane,
        ns,
        pod,
        &["etcdctl", "member", "list", "-w", "json", "--hex"],
    )
    .ok()?;
    let list: Value = serde_json::from_str(&out).ok()?;
    Some(
        list["members"]
            .as_array()?
            .iter()
            .map(|m| {
                let name = m["name"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("unstarted {}", m["peerURLs"][0]));
                (name, m["ID"].as_str().unwrap_or_default().to_owned())
            })
            .collect(),
    )
}

fn names(members: &BTreeMap<String, String>) -> Vec<&str> {
    members.keys().map(String::as_str).collect()
}

/// Waits until every listed pod reports exactly the members `expected`.
fn wait_members(
    plane: &ControlPlane,
    ns: &str,
    pods: &[&str],
    expected: &[&str],
) -> BTreeMap<String, String> {
    wait(
        plane,
        ns,
        120,
        &format!("the members were not {expected:?} as seen from {pods:?}"),
        || {
            let seen: Vec<_> = pods.iter().map(|pod| members(plane, ns, pod)).collect();
            let first = seen.first()?.clone()?;
            (names(&first) == expected && seen.iter().all(|s| s.as_ref() == Some(&first)))
                .then_some(first)
        },
    )
}

/// (reason, message) of the helper's Events in the namespace.
fn helper_events(plane: &ControlPlane, ns: &str) -> Vec<(String, String)> {
    let Some(list) = get(plane, ns, "events") else {
        return Vec::new();
    };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["source"]["component"] == "raft-injector-member")
        .filter(|e| e["involvedObject"]["kind"] == "StatefulSet")
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_owned(),
                e["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn wait_event(plane: &ControlPlane, ns: &str, reason: &str, pod: &str) -> String {
    let prefix = format!("{pod}: ");
    wait(
        plane,
        ns,
        60,
        &format!("no {reason} Event for {pod}"),
        || {
            helper_events(plane, ns)
                .into_iter()
                .find(|(r, m)| r == reason && m.starts_with(&prefix))
                .map(|(_, m)| m)
        },
    )
}

fn scale(plane: &ControlPlane, ns: &str, replicas: u32) {
    let (ok, _, stderr) = run(
        plane,
        &[
            "scale",
            "-n",
            ns,
            "statefulset/etcd",
            &format!("--replicas={replicas}"),
        ],
        None,
    );
    assert!(ok, "{stderr}");
}

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
        assert!(message.contains("initial cluster"), "{message}");
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
    let old_uid = get(plane, &ns, "pod/etcd-1").unwrap()["metadata"]["uid"].clone();
    let (ok, _, stderr) = run(
        plane,
        &["delete", "pod", "-n", &ns, "etcd-1", "--wait=false"],
        None,
    );
    assert!(ok, "{stderr}");
    let kept = wait_event(plane, &ns, "MemberKept", "etcd-1");
    assert!(kept.contains("below spec.replicas 3"), "{kept}");
    wait(plane, &ns, 240, "etcd-1 did not come back", || {
        let pod = get(plane, &ns, "pod/etcd-1")?;
        (pod["metadata"]["uid"] != old_uid).then_some(())
    });
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
