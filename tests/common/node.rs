//! The local cluster's real node, for the tests that run pods: the webhook installed
//! in-cluster once per test binary, waits with deadlines that print what the cluster looked
//! like, and etcd seen from inside its pods.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;

use super::controlplane::{control_plane, eventually, get, run, ControlPlane};
use serde_json::Value;

/// The control plane with the webhook installed in-cluster (once per test binary).
pub fn installed() -> &'static ControlPlane {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let plane = control_plane();
    INSTALLED.get_or_init(|| {
        super::controlplane::delete_earlier_test_namespaces(plane);
        let status = Command::new(super::root().join("tests/controlplane/run.sh"))
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
pub fn report(plane: &ControlPlane, ns: &str) -> String {
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
pub fn wait<T>(
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
pub fn ready_pods(plane: &ControlPlane, ns: &str) -> Vec<String> {
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

pub fn wait_ready(plane: &ControlPlane, ns: &str, expected: &[&str]) {
    wait(
        plane,
        ns,
        240,
        &format!("pods {expected:?} were not Ready"),
        || (ready_pods(plane, ns) == expected).then_some(()),
    );
}

pub fn exec(plane: &ControlPlane, ns: &str, pod: &str, command: &[&str]) -> Result<String, String> {
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
pub fn members(plane: &ControlPlane, ns: &str, pod: &str) -> Option<BTreeMap<String, String>> {
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

pub fn names(members: &BTreeMap<String, String>) -> Vec<&str> {
    members.keys().map(String::as_str).collect()
}

/// Waits until every listed pod reports exactly the members `expected`.
pub fn wait_members(
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
pub fn helper_events(plane: &ControlPlane, ns: &str) -> Vec<(String, String)> {
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

pub fn wait_event(plane: &ControlPlane, ns: &str, reason: &str, pod: &str) -> String {
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

pub fn scale(plane: &ControlPlane, ns: &str, replicas: u32) {
    scale_statefulset(plane, ns, "etcd", replicas);
}

/// `kubectl scale` of StatefulSet `name`, which must be admitted.
pub fn scale_statefulset(plane: &ControlPlane, ns: &str, name: &str, replicas: u32) {
    let (ok, _, stderr) = run(
        plane,
        &[
            "scale",
            "-n",
            ns,
            &format!("statefulset/{name}"),
            &format!("--replicas={replicas}"),
        ],
        None,
    );
    assert!(ok, "{stderr}");
}

/// The uid of `pod`, to tell its replacement from it.
pub fn pod_uid(plane: &ControlPlane, ns: &str, pod: &str) -> Value {
    get(plane, ns, &format!("pod/{pod}")).expect("the pod exists")["metadata"]["uid"].clone()
}

/// Waits until `pod` exists again under another uid than `old_uid` (its replacement).
pub fn wait_replaced(plane: &ControlPlane, ns: &str, pod: &str, old_uid: &Value) {
    wait(plane, ns, 240, &format!("{pod} did not come back"), || {
        let pod = get(plane, ns, &format!("pod/{pod}"))?;
        (pod["metadata"]["uid"] != *old_uid).then_some(())
    });
}

/// Applies `examples/etcd.yaml` in `ns`, after `edit` (identity for the example as shipped).
pub fn apply_etcd(plane: &ControlPlane, ns: &str, edit: impl FnOnce(String) -> String) {
    let manifest = edit(super::read("examples/etcd.yaml"));
    let (ok, _, stderr) = run(plane, &["apply", "-n", ns, "-f", "-"], Some(&manifest));
    assert!(ok, "{stderr}");
}

pub fn put(plane: &ControlPlane, ns: &str, pod: &str, key: &str, value: &str) {
    exec(plane, ns, pod, &["etcdctl", "put", key, value])
        .unwrap_or_else(|e| panic!("put {key} through {pod}: {e}\n{}", report(plane, ns)));
}

/// The value of `key` as `pod` reads it (a linearizable read: it needs a quorum).
pub fn read_key(plane: &ControlPlane, ns: &str, pod: &str, key: &str) -> Option<String> {
    exec(
        plane,
        ns,
        pod,
        &["etcdctl", "get", "--print-value-only", key],
    )
    .ok()
    .map(|v| v.trim().to_owned())
}

/// Every key under `prefix` with its value, as `pod` reads them.
pub fn keys(plane: &ControlPlane, ns: &str, pod: &str, prefix: &str) -> BTreeMap<String, String> {
    let out = exec(plane, ns, pod, &["etcdctl", "get", "--prefix", prefix])
        .unwrap_or_else(|e| panic!("reading {prefix} through {pod}: {e}\n{}", report(plane, ns)));
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(2)
        .filter(|pair| pair.len() == 2)
        .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
        .collect()
}

/// Restart counts of every container of every pod, as `pod/container=count`, for the ones
/// that restarted.
pub fn restarted(plane: &ControlPlane, ns: &str) -> Vec<String> {
    let Some(list) = get(plane, ns, "pods") else {
        return vec!["cannot list pods".to_owned()];
    };
    let mut out = Vec::new();
    for pod in list["items"].as_array().into_iter().flatten() {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        for key in ["containerStatuses", "initContainerStatuses"] {
            for status in pod["status"][key].as_array().into_iter().flatten() {
                let count = status["restartCount"].as_u64().unwrap_or_default();
                if count > 0 {
                    out.push(format!(
                        "{name}/{}={count}",
                        status["name"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
    }
    out
}

/// How many of the helper's Events have each reason.
pub fn event_counts(plane: &ControlPlane, ns: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (reason, _) in helper_events(plane, ns) {
        *counts.entry(reason).or_insert(0) += 1;
    }
    counts
}

/// The network namespace of a running pod, found by its IP among the node's pod netns.
pub fn pod_netns(plane: &ControlPlane, ns: &str, pod: &str) -> std::path::PathBuf {
    let ip = get(plane, ns, &format!("pod/{pod}"))
        .and_then(|p| p["status"]["podIP"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{pod} has no IP\n{}", report(plane, ns)));
    let dir = plane
        .dir
        .join("containerd/state/io.containerd.grpc.v1.cri/netns");
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let out = Command::new("nsenter")
            .arg(format!("--net={}", path.display()))
            .args(["ip", "-o", "-4", "addr", "show"])
            .output()
            .expect("nsenter runs");
        if String::from_utf8_lossy(&out.stdout).contains(&format!(" {ip}/")) {
            return path;
        }
    }
    panic!(
        "no network namespace in {} has {pod}'s IP {ip}",
        dir.display()
    );
}

/// Cuts a pod off the network (loopback still works), as a partition would: its packets to
/// the API server, DNS and the other members are dropped. The rule goes with the pod.
pub fn partition(plane: &ControlPlane, ns: &str, pod: &str) {
    let netns = pod_netns(plane, ns, pod);
    let status = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args([
            "iptables", "-w", "-I", "OUTPUT", "!", "-o", "lo", "-j", "DROP",
        ])
        .status()
        .expect("nsenter runs");
    assert!(status.success(), "could not partition {pod}");
}

/// The member list as `pod` sees it, waiting until it answers.
pub fn member_ids(plane: &ControlPlane, ns: &str, pod: &str) -> BTreeMap<String, String> {
    wait(
        plane,
        ns,
        60,
        &format!("{pod} did not list the members"),
        || members(plane, ns, pod),
    )
}

/// Prints the helper's Events in `ns`, oldest first: what each join, leave and repair
/// decided, and how long the leaves took.
pub fn print_story(plane: &ControlPlane, ns: &str) {
    let (_, out, _) = run(
        plane,
        &[
            "get",
            "events",
            "-n",
            ns,
            "--sort-by",
            ".metadata.creationTimestamp",
            "--field-selector",
            "source=raft-injector-member",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ],
        None,
    );
    eprintln!("raft-injector-member Events in {ns}:\n{out}");
}

/// Builds an example's image with `run.sh VERB` and loads it into the node (cached by its
/// sources); returns the image name run.sh printed.
pub fn load_example_image(plane: &ControlPlane, verb: &str) -> String {
    // Tests of one binary run in parallel; one build and import at a time.
    static LOADING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(super::root().join("tests/controlplane/run.sh"))
        .arg(verb)
        .arg(&plane.dir)
        .output()
        .expect("run.sh runs");
    assert!(
        out.status.success(),
        "run.sh {verb} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits for the pods to be gone (a scale-down finished), so their names can be reused.
pub fn wait_gone<S: AsRef<str> + std::fmt::Debug>(plane: &ControlPlane, ns: &str, gone: &[S]) {
    wait(
        plane,
        ns,
        120,
        &format!("pods {gone:?} were not deleted"),
        || {
            gone.iter()
                .all(|pod| get(plane, ns, &format!("pod/{}", pod.as_ref())).is_none())
                .then_some(())
        },
    );
}

/// `raft-injector check -n NS` with this binary: (passed, what it printed).
pub fn check_namespace(plane: &ControlPlane, ns: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_raft-injector"))
        .args(["check", "-n", ns])
        .env("KUBECONFIG", &plane.kubeconfig)
        .output()
        .expect("raft-injector check runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
