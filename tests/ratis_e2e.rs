//! Apache Ratis for real, on the local cluster's node: `examples/ratis/kv.yaml` applied
//! unchanged, its image built here (`run.sh ratis`: Maven, jlink). The app builds its
//! RaftGroup from the injected env alone; scaling goes through the generic flavor's join
//! and leave URLs, which the app implements with Ratis' setConfiguration.
//!
//! One story, in order: the group forms with the injected group id, a key written on one
//! member is read on another, 3 → 5 → 3 with the configuration following, and a restart
//! that changes nothing. Every wait has a deadline; on failure the test prints the pods,
//! their events and logs.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::controlplane::{get, namespace, run, ControlPlane};
use common::node::check_namespace as check;
use common::node::*;
use serde_json::Value;

const STATEFULSET: &str = "kv";

/// One Ratis group at a time: five JVMs each on a two-core node already stretch Ratis'
/// election timeouts, and two groups at once made a follower miss its leader for over a
/// minute once (a slow node, not a lost member).
static ONE_GROUP_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pod_ip(plane: &ControlPlane, ns: &str, pod: &str) -> Option<String> {
    let pod = get(plane, ns, &format!("pod/{pod}"))?;
    pod["status"]["podIP"].as_str().map(str::to_owned)
}

/// One HTTP call to a pod's `http` port: (status, body), or None when it did not answer.
fn http(
    plane: &ControlPlane,
    ns: &str,
    pod: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let ip = pod_ip(plane, ns, pod)?;
    let mut args = vec![
        "-sS".to_owned(),
        "--max-time".to_owned(),
        "10".to_owned(),
        "-X".to_owned(),
        method.to_owned(),
        "-w".to_owned(),
        "\n%{http_code}".to_owned(),
    ];
    if let Some(body) = body {
        args.extend(["--data-binary".to_owned(), body.to_owned()]);
    }
    args.push(format!("http://{ip}:8080{path}"));
    let out = Command::new("curl").args(&args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n')?;
    let status: u16 = status.trim().parse().ok()?;
    (status != 0).then(|| (status, body.to_owned()))
}

/// `GET /raft/group` on `pod`.
fn group(plane: &ControlPlane, ns: &str, pod: &str) -> Option<Value> {
    match http(plane, ns, pod, "GET", "/raft/group", None)? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

fn peer_ids(group: &Value) -> BTreeSet<String> {
    group["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["id"].as_str().map(str::to_owned))
        .collect()
}

fn pods(n: usize) -> Vec<String> {
    pods_of(STATEFULSET, n)
}

fn pods_of(sts: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{sts}-{i}")).collect()
}

/// Every one of `expected` pods reports the same group: `group_id`, exactly the peers
/// `expected`, and one leader among them that calls itself LEADER. Returns the leader.
fn agreed(plane: &ControlPlane, ns: &str, expected: &[String], group_id: &str) -> Option<String> {
    let want: BTreeSet<String> = expected.iter().cloned().collect();
    let mut leaders = BTreeSet::new();
    let mut leading = Vec::new();
    for pod in expected {
        let view = group(plane, ns, pod)?;
        if view["groupId"] != group_id || peer_ids(&view) != want {
            return None;
        }
        leaders.insert(view["leader"].as_str()?.to_owned());
        if view["role"] == "LEADER" {
            leading.push(pod.clone());
        }
    }
    (leaders.len() == 1 && leading.len() == 1 && leaders.contains(&leading[0]))
        .then(|| leading.remove(0))
}

fn wait_agreed(
    plane: &ControlPlane,
    ns: &str,
    n: usize,
    group_id: &str,
    seconds: u64,
) -> (String, Duration) {
    wait_agreed_of(plane, ns, STATEFULSET, n, group_id, seconds)
}

fn wait_agreed_of(
    plane: &ControlPlane,
    ns: &str,
    sts: &str,
    n: usize,
    group_id: &str,
    seconds: u64,
) -> (String, Duration) {
    let started = Instant::now();
    let expected = pods_of(sts, n);
    let leader = wait(
        plane,
        ns,
        seconds,
        &format!("pods {expected:?} did not all report group {group_id} with exactly these peers and one leader"),
        || agreed(plane, ns, &expected, group_id),
    );
    (leader, started.elapsed())
}

fn scale(plane: &ControlPlane, ns: &str, replicas: u32) {
    scale_of(plane, ns, STATEFULSET, replicas)
}

fn scale_of(plane: &ControlPlane, ns: &str, sts: &str, replicas: u32) {
    let (ok, _, stderr) = run(
        plane,
        &[
            "scale",
            "-n",
            ns,
            &format!("statefulset/{sts}"),
            &format!("--replicas={replicas}"),
        ],
        None,
    );
    assert!(ok, "{stderr}");
}

fn logs(plane: &ControlPlane, ns: &str, pod: &str) -> String {
    let (_, out, _) = run(plane, &["logs", "-n", ns, pod, "-c", "kv"], None);
    out
}

#[test]
fn a_ratis_group_forms_from_the_injected_env_and_follows_scaling_through_join_and_leave_urls() {
    let _alone = ONE_GROUP_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let plane = installed();
    common::node::load_example_image(plane, "ratis");
    let ns = namespace(plane, "ratis", true);
    let manifest = common::read("examples/ratis/kv.yaml");
    let applied = Instant::now();
    let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    assert!(ok, "{stderr}");

    // The group id the webhook injected (a UUIDv5 of <ns>/kv).
    let sts = get(plane, &ns, &format!("statefulset/{STATEFULSET}")).expect("StatefulSet");
    let env = &sts["spec"]["template"]["spec"]["containers"][0]["env"];
    let group_id = env
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "RAFT_GROUP_ID")
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no RAFT_GROUP_ID injected: {env}"))
        .to_owned();
    assert_eq!(
        group_id,
        raft_injector::policy::resolve::default_group_id(&ns, STATEFULSET)
    );

    // 1. Three pods become Ready and agree on the injected group, 3 peers, one leader.
    wait_ready(plane, &ns, &["kv-0", "kv-1", "kv-2"]);
    let (leader, _) = wait_agreed(plane, &ns, 3, &group_id, 60);
    let formed = applied.elapsed();
    eprintln!("group {group_id} formed with leader {leader} in {formed:.1?} after apply");

    // 2. A key written through kv-0 is read through kv-2 (a linearizable read).
    let (status, body) = http(
        plane,
        &ns,
        "kv-0",
        "PUT",
        "/kv/greeting",
        Some("hello from kv-0"),
    )
    .expect("kv-0 answers");
    assert_eq!(status, 204, "PUT through kv-0: {body}");
    assert_eq!(
        http(plane, &ns, "kv-2", "GET", "/kv/greeting", None),
        Some((200, "hello from kv-0".to_owned()))
    );
    assert_eq!(
        http(plane, &ns, "kv-1", "GET", "/kv/absent", None).map(|(s, _)| s),
        Some(404)
    );

    // 3. Scale to 5: the two new pods join through the join URL; every pod reports 5 peers.
    let started = Instant::now();
    scale(plane, &ns, 5);
    let (_, _) = wait_agreed(plane, &ns, 5, &group_id, 60);
    let grown = started.elapsed();
    eprintln!("3 -> 5: every pod reports 5 peers after {grown:.1?}");
    for pod in ["kv-3", "kv-4"] {
        let joined = wait_event(plane, &ns, "MemberJoined", pod);
        assert!(joined.contains("join URL http://kv-"), "{joined}");
    }
    wait_ready(plane, &ns, &["kv-0", "kv-1", "kv-2", "kv-3", "kv-4"]);
    assert_eq!(
        http(plane, &ns, "kv-4", "GET", "/kv/greeting", None),
        Some((200, "hello from kv-0".to_owned())),
        "a joined member serves the data written before it joined"
    );

    // 4. Back to 3: the two leave through the leave URL; exactly kv-0..2 remain.
    let started = Instant::now();
    scale(plane, &ns, 3);
    let (_, _) = wait_agreed(plane, &ns, 3, &group_id, 60);
    let shrunk = started.elapsed();
    eprintln!("5 -> 3: every pod reports 3 peers after {shrunk:.1?}");
    for pod in ["kv-3", "kv-4"] {
        let removed = wait_event(plane, &ns, "MemberRemoved", pod);
        assert!(
            removed.contains("removed from the Raft configuration"),
            "{removed}"
        );
    }
    wait_gone(plane, &ns, &pods(5)[3..]);
    assert_eq!(
        http(plane, &ns, "kv-1", "GET", "/kv/greeting", None),
        Some((200, "hello from kv-0".to_owned())),
        "the key survives the scale"
    );

    // 5. A restart of a bootstrap member changes nothing: same 3 peers, one leader, no
    //    join or leave call.
    let before = get(plane, &ns, "pod/kv-1").expect("kv-1");
    let (ok, _, stderr) = run(
        plane,
        &["delete", "pod", "-n", &ns, "kv-1", "--wait=true"],
        None,
    );
    assert!(ok, "{stderr}");
    wait(plane, &ns, 120, "kv-1 did not come back", || {
        let now = get(plane, &ns, "pod/kv-1")?;
        (now["metadata"]["uid"] != before["metadata"]["uid"]).then_some(())
    });
    wait_ready(plane, &ns, &["kv-0", "kv-1", "kv-2"]);
    wait_agreed(plane, &ns, 3, &group_id, 60);
    let kept = wait_event(plane, &ns, "MemberKept", "kv-1");
    assert!(kept.contains("keeping the membership"), "{kept}");
    assert_eq!(
        http(plane, &ns, "kv-1", "GET", "/kv/greeting", None),
        Some((200, "hello from kv-0".to_owned())),
        "the restarted member replays its log from the volume"
    );

    // The join and leave calls, as the bootstrap members logged them.
    let all_logs: String = pods(3).iter().map(|pod| logs(plane, &ns, pod)).collect();
    for (call, pod) in [
        ("join", "kv-3"),
        ("join", "kv-4"),
        ("leave", "kv-3"),
        ("leave", "kv-4"),
    ] {
        assert!(
            all_logs.contains(&format!("{call} {pod}")),
            "no {call} of {pod} in the logs of kv-0..2\n{}",
            report(plane, &ns)
        );
    }
    let events = helper_events(plane, &ns);
    assert!(
        !events.iter().any(|(reason, _)| reason.ends_with("Failed")),
        "{events:#?}"
    );
    print_story(plane, &ns);
    eprintln!(
        "Ratis story: formed in {formed:.1?} after apply; 3->5 in {grown:.1?}; 5->3 in {shrunk:.1?}"
    );
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}

/// A held-out shape: the Ratis example under other names (StatefulSet, Service, service
/// account, RoleBinding `ledger`) and its own group id, with the example's three URLs. The
/// helpers lose their API access (RoleBinding deleted) while 5→3 scales ledger-3 and
/// ledger-4 away, so neither leave runs; `check` names both stale members; once access is
/// back, the reconcile sidecar next to the leader removes them through the leave URL.
#[test]
fn a_generic_app_with_a_members_url_has_a_missed_leave_repaired_and_shown_by_check() {
    const STS: &str = "ledger";
    const GROUP: &str = "7d3c1a52-8f0e-4b6a-9c21-5e4f3a2b1c0d";
    let _alone = ONE_GROUP_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let plane = installed();
    common::node::load_example_image(plane, "ratis");
    let ns = namespace(plane, "ledger", true);
    let manifest = common::read("examples/ratis/kv.yaml")
        .replace("name: kv\n", "name: ledger\n")
        .replace("app: kv", "app: ledger")
        .replace("serviceName: kv", "serviceName: ledger")
        .replace("serviceAccountName: kv", "serviceAccountName: ledger")
        .replace("name: kv-raft-member", "name: ledger-raft-member")
        .replace(
            "  annotations:\n",
            &format!("  annotations:\n    raft-injector.io/group-id: \"{GROUP}\"\n"),
        );
    assert!(
        !manifest.contains(": kv\n"),
        "every name changed:\n{manifest}"
    );
    let apply = |manifest: &str| {
        let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(manifest));
        assert!(ok, "{stderr}");
    };
    apply(&manifest);
    let names = |n| pods_of(STS, n);
    let refs = |pods: &[String]| {
        pods.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    };

    wait_ready(plane, &ns, &["ledger-0", "ledger-1", "ledger-2"]);
    wait_agreed_of(plane, &ns, STS, 3, GROUP, 90);
    scale_of(plane, &ns, STS, 5);
    wait_agreed_of(plane, &ns, STS, 5, GROUP, 90);
    let five = names(5);
    wait_ready(
        plane,
        &ns,
        &five.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let (passed, out) = check(plane, &ns);
    assert!(passed, "check is green with 5 members:\n{out}");

    // `member status -o json` in a generic pod, through the members URL.
    let (ok, status, stderr) = run(
        plane,
        &[
            "exec",
            "-n",
            &ns,
            "ledger-0",
            "-c",
            "ledger",
            "--",
            "/raft-injector/raft-injector",
            "member",
            "status",
            "-o",
            "json",
        ],
        None,
    );
    assert!(ok, "member status in ledger-0: {stderr}");
    let status: Value = serde_json::from_str(&status).expect("member status -o json is JSON");
    assert_eq!(status["flavor"], "generic", "{status}");
    assert_eq!(status["id"], "ledger-0", "{status}");
    assert_eq!(
        status["members"].as_array().map(Vec::len),
        Some(5),
        "{status}"
    );
    assert!(status["leader"].is_string(), "{status}");

    // The helpers lose their API access, then 5 → 3: neither leave can read the
    // StatefulSet, so both keep their membership, and no sidecar can repair.
    let (ok, _, stderr) = run(
        plane,
        &["delete", "rolebinding", "-n", &ns, "ledger-raft-member"],
        None,
    );
    assert!(ok, "{stderr}");
    scale_of(plane, &ns, STS, 3);
    wait_gone(plane, &ns, &five[3..]);
    let stale = wait(
        plane,
        &ns,
        90,
        "check did not name both stale members",
        || {
            let (passed, out) = check(plane, &ns);
            (!passed
                && out.contains("stale member ledger-3")
                && out.contains("stale member ledger-4"))
            .then_some(out)
        },
    );
    eprintln!("check while the leaves were missed:\n{stale}");
    let peers_of = |pod: &str| group(plane, &ns, pod).map(|g| peer_ids(&g));
    assert_eq!(
        peers_of("ledger-0"),
        Some(five.iter().cloned().collect()),
        "still 5 peers while the helpers cannot act"
    );

    // Access back: within 120 s every pod reports exactly ledger-0..2, and check is green.
    apply(&manifest);
    let restored = Instant::now();
    wait_agreed_of(plane, &ns, STS, 3, GROUP, 120);
    let repaired = restored.elapsed();
    for pod in ["ledger-3", "ledger-4"] {
        let needle = format!("removed stale member {pod} ");
        wait(
            plane,
            &ns,
            60,
            &format!("no MemberRepaired Event for {pod}"),
            || {
                helper_events(plane, &ns)
                    .into_iter()
                    .find(|(reason, message)| {
                        reason == "MemberRepaired" && message.contains(&needle)
                    })
            },
        );
    }
    let green = wait(plane, &ns, 60, "check did not turn green", || {
        let (passed, out) = check(plane, &ns);
        passed.then_some(out)
    });
    assert!(
        green.contains("3 members: ledger-0, ledger-1, ledger-2"),
        "{green}"
    );

    // Below the bootstrap size and back: 3 → 1 removes the bootstrap members ledger-1 and
    // ledger-2 (their volumes go too, whenScaled: Delete); 1 → 3 brings them back empty. The
    // group no longer lists them, so their join containers add them through the join URL
    // (and leave /raft-injector/joined, so the app does not bootstrap a group of its own).
    let (status, body) = http(
        plane,
        &ns,
        "ledger-0",
        "PUT",
        "/kv/kept",
        Some("across 3-1-3"),
    )
    .expect("ledger-0 answers");
    assert_eq!(status, 204, "{body}");
    scale_of(plane, &ns, STS, 1);
    wait_agreed_of(plane, &ns, STS, 1, GROUP, 90);
    wait_gone(plane, &ns, &names(3)[1..]);
    scale_of(plane, &ns, STS, 3);
    let regrown = Instant::now();
    wait_agreed_of(plane, &ns, STS, 3, GROUP, 120);
    for pod in ["ledger-1", "ledger-2"] {
        let joined = wait_event(plane, &ns, "MemberJoined", pod);
        assert!(joined.contains("join URL http://ledger-0"), "{joined}");
    }
    for pod in names(3) {
        assert_eq!(
            http(plane, &ns, &pod, "GET", "/kv/kept", None),
            Some((200, "across 3-1-3".to_owned())),
            "{pod} serves the key written while it was gone"
        );
    }
    eprintln!(
        "3 -> 1 -> 3: the removed bootstrap members rejoined through the join URL in {:.1?}",
        regrown.elapsed()
    );
    eprintln!(
        "held-out Ratis ({}): both missed leaves repaired {repaired:.1?} after access was restored",
        refs(&names(3))
    );
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}
