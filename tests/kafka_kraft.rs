//! Kafka KRaft controllers whose quorum follows `kubectl scale` (flavor kraft), on the local
//! cluster: `examples/kafka.yaml` as shipped, in a fresh opted-in namespace, judged with
//! Kafka's own tools run in the pods (`kafka-features.sh`, `kafka-metadata-quorum.sh`, the
//! console producer and consumer). The helper's `member status` is only used to wait
//! cheaply between the judgements (a JVM tool per poll would load the two-core node).
//!
//! 3 controllers form a dynamic quorum (kraft.version 1, voters exactly 0,1,2); 3 → 5 → 3;
//! a deleted controller comes back as the same voter with the same directory id; one whose
//! volume lost its data rejoins as an observer and is swapped in with a new directory id; with the
//! helpers' API access cut during a 5 → 3 both leaves are kept, and within 120 s of restored
//! access the sidecar next to the leader removes both; every message produced with
//! `acks=all` along the way is consumed at the end; `raft-injector check` is green.
//!
//! At the end, a controller volume lost while the whole quorum was stopped (0 replicas, its PVC
//! deleted, 1 replica for a minute, then 3) comes back as an observer with a new directory id
//! and is swapped in as voter 0.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::controlplane::{namespace, run, ControlPlane};
use common::node::{
    check_namespace as check, installed, report, scale_statefulset, wait, wait_gone,
};
use serde_json::Value;

const IMAGE: &str = "docker.io/apache/kafka:4.4.0";
const CONTROLLERS: &str = "kafka-controller";
const TOPIC: &str = "events";

/// A command in container `kafka` of `pod`: (succeeded, stdout, stderr).
fn in_pod(
    plane: &ControlPlane,
    ns: &str,
    pod: &str,
    stdin: Option<&str>,
    command: &[&str],
) -> (bool, String, String) {
    let mut args = vec!["exec", "-n", ns, pod, "-c", "kafka"];
    if stdin.is_some() {
        args.push("-i");
    }
    args.push("--");
    args.extend_from_slice(command);
    run(plane, &args, stdin)
}

/// The voters as `kafka-metadata-quorum.sh describe --status` in `pod` lists them:
/// node id → directory id.
fn voters(plane: &ControlPlane, ns: &str, pod: &str) -> Result<BTreeMap<i64, String>, String> {
    let (ok, out, err) = in_pod(
        plane,
        ns,
        pod,
        None,
        &[
            "/opt/kafka/bin/kafka-metadata-quorum.sh",
            "--bootstrap-controller",
            "localhost:9093",
            "describe",
            "--status",
        ],
    );
    if !ok {
        return Err(format!("{out}{err}"));
    }
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("CurrentVoters:"))
        .ok_or_else(|| format!("no CurrentVoters line in:\n{out}"))?;
    let list: Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("{e}: {line}\n{out}"))?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            Some((
                v["id"].as_i64()?,
                v["directoryId"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect())
}

/// The voter node ids the helper in `pod` sees (cheap: no JVM), for waiting.
fn helper_voters(plane: &ControlPlane, ns: &str, pod: &str) -> Option<Vec<i64>> {
    let (ok, out, _) = in_pod(
        plane,
        ns,
        pod,
        None,
        &[
            "/raft-injector/raft-injector",
            "member",
            "status",
            "-o",
            "json",
        ],
    );
    let status: Value = serde_json::from_str(&out)
        .ok()
        .filter(|_| ok || !out.is_empty())?;
    let mut ids: Vec<i64> = status["members"]
        .as_array()?
        .iter()
        .filter(|m| m["learner"] == false)
        .filter_map(|m| m["id"].as_str()?.split('@').next()?.parse().ok())
        .collect();
    ids.sort();
    Some(ids)
}

/// Waits until the voters are exactly `expected`, then judges it with Kafka's own tool.
fn wait_voters(
    plane: &ControlPlane,
    ns: &str,
    expected: &[i64],
    seconds: u64,
) -> BTreeMap<i64, String> {
    let pod = "kafka-controller-0";
    wait(
        plane,
        ns,
        seconds,
        &format!("the voters were not {expected:?}"),
        || (helper_voters(plane, ns, pod)? == expected).then_some(()),
    );
    let listed = wait(
        plane,
        ns,
        60,
        &format!("kafka-metadata-quorum.sh did not list voters {expected:?}"),
        || voters(plane, ns, pod).ok(),
    );
    assert_eq!(
        listed.keys().copied().collect::<Vec<_>>(),
        expected,
        "kafka-metadata-quorum.sh describe --status: {listed:?}"
    );
    listed
}

fn pods_ready(plane: &ControlPlane, ns: &str, expected: &[String]) {
    let mut expected = expected.to_vec();
    expected.sort();
    wait(
        plane,
        ns,
        300,
        &format!("pods {expected:?} were not Ready"),
        || (common::node::ready_pods(plane, ns) == expected).then_some(()),
    );
}

fn pods(controllers: usize) -> Vec<String> {
    let mut names = vec!["kafka-broker-0".to_owned()];
    names.extend((0..controllers).map(|i| format!("{CONTROLLERS}-{i}")));
    names
}

/// Produces `message` with acks=all through the broker.
fn produce(plane: &ControlPlane, ns: &str, message: &str) {
    let (ok, out, err) = in_pod(
        plane,
        ns,
        "kafka-broker-0",
        Some(&format!("{message}\n")),
        &[
            "/opt/kafka/bin/kafka-console-producer.sh",
            "--bootstrap-server",
            "localhost:9092",
            "--topic",
            TOPIC,
            "--producer-property",
            "acks=all",
            "--producer-property",
            "delivery.timeout.ms=60000",
        ],
    );
    assert!(
        ok && !err.contains("ERROR"),
        "producing {message}: {out}{err}\n{}",
        report(plane, ns)
    );
}

#[test]
fn kraft_controllers_follow_kubectl_scale_keep_their_identity_and_get_a_missed_leave_repaired() {
    let plane = installed();
    assert_eq!(common::node::load_example_image(plane, "kafka"), IMAGE);
    let ns = namespace(plane, "kraft", true);
    let manifest = common::read("examples/kafka.yaml");
    let apply = |manifest: &str| {
        let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(manifest));
        assert!(ok, "{stderr}");
    };
    apply(&manifest);
    let started = Instant::now();
    pods_ready(plane, &ns, &pods(3));
    let formed = wait_voters(plane, &ns, &[0, 1, 2], 240);
    eprintln!(
        "3 controllers formed a quorum in {:.0?}: {formed:?}",
        started.elapsed()
    );

    // A dynamic quorum: kraft.version finalized at 1.
    let (ok, features, err) = in_pod(
        plane,
        &ns,
        "kafka-controller-0",
        None,
        &[
            "/opt/kafka/bin/kafka-features.sh",
            "--bootstrap-controller",
            "localhost:9093",
            "describe",
        ],
    );
    assert!(ok, "kafka-features.sh: {features}{err}");
    let kraft_version = features
        .lines()
        .find(|l| l.contains("Feature: kraft.version"))
        .unwrap_or_default();
    assert!(
        kraft_version.contains("FinalizedVersionLevel: 1"),
        "kraft.version is not finalized at 1:\n{features}"
    );
    // The bootstrap controllers carry the directory ids derived from the group id.
    for (id, dir) in &formed {
        let expected =
            raft_injector::policy::flavor::kraft::directory_id("kafka-example", *id as i32);
        assert_eq!(dir, &expected, "voter {id}'s directory id");
    }

    let (ok, out, err) = in_pod(
        plane,
        &ns,
        "kafka-broker-0",
        None,
        &[
            "/opt/kafka/bin/kafka-topics.sh",
            "--bootstrap-server",
            "localhost:9092",
            "--create",
            "--topic",
            TOPIC,
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
    );
    assert!(ok, "creating the topic: {out}{err}");
    let mut sent = vec!["before-any-scaling".to_owned()];
    produce(plane, &ns, &sent[0]);

    // 3 → 5: the new controllers are added once caught up.
    let step = Instant::now();
    scale_statefulset(plane, &ns, CONTROLLERS, 5);
    pods_ready(plane, &ns, &pods(5));
    wait_voters(plane, &ns, &[0, 1, 2, 3, 4], 240);
    eprintln!("3 -> 5: voters 0..4 {:.0?} after the scale", step.elapsed());
    sent.push("at-five".to_owned());
    produce(plane, &ns, &sent[1]);

    // 5 → 3: each leaves in its preStop hook.
    let step = Instant::now();
    scale_statefulset(plane, &ns, CONTROLLERS, 3);
    wait_gone(plane, &ns, &["kafka-controller-3", "kafka-controller-4"]);
    let three = wait_voters(plane, &ns, &[0, 1, 2], 120);
    eprintln!(
        "5 -> 3: voters 0,1,2 {:.0?} after the scale",
        step.elapsed()
    );
    assert_eq!(
        three, formed,
        "the bootstrap voters kept their directory ids"
    );
    sent.push("back-at-three".to_owned());
    produce(plane, &ns, &sent[2]);

    // A restart is not a leave: the same voters with the same directory ids.
    let old = common::node::pod_uid(plane, &ns, "kafka-controller-1");
    let (ok, _, err) = run(
        plane,
        &["delete", "pod", "-n", &ns, "kafka-controller-1"],
        None,
    );
    assert!(ok, "{err}");
    let step = Instant::now();
    common::node::wait_replaced(plane, &ns, "kafka-controller-1", &old);
    pods_ready(plane, &ns, &pods(3));
    let after_restart = wait_voters(plane, &ns, &[0, 1, 2], 120);
    eprintln!(
        "a deleted controller back as the same voter in {:.0?}",
        step.elapsed()
    );
    assert_eq!(
        after_restart, formed,
        "a restarted controller is the same voter with the same directory id"
    );
    sent.push("after-a-restart".to_owned());
    produce(plane, &ns, &sent[3]);

    // A bootstrap controller whose volume lost its data: it must not format as the old
    // voter (an empty log voting as node 2); it rejoins as an observer with a new directory
    // id, and its sidecar swaps the old voter for the new one.
    let (ok, out, err) = in_pod(
        plane,
        &ns,
        "kafka-controller-2",
        None,
        &["sh", "-c", "rm -rf /var/lib/kafka/data/*"],
    );
    assert!(ok, "wiping the volume: {out}{err}");
    let old = common::node::pod_uid(plane, &ns, "kafka-controller-2");
    let (ok, _, err) = run(
        plane,
        &["delete", "pod", "-n", &ns, "kafka-controller-2"],
        None,
    );
    assert!(ok, "{err}");
    let step = Instant::now();
    common::node::wait_replaced(plane, &ns, "kafka-controller-2", &old);
    pods_ready(plane, &ns, &pods(3));
    let old_dir = formed[&2].clone();
    wait(
        plane,
        &ns,
        240,
        "controller 2 was not swapped in with a new directory id",
        || {
            let listed = voters(plane, &ns, "kafka-controller-0").ok()?;
            (listed.keys().copied().collect::<Vec<_>>() == [0, 1, 2] && listed[&2] != old_dir)
                .then_some(())
        },
    );
    eprintln!(
        "a controller that lost its volume was swapped in {:.0?} after its pod was deleted",
        step.elapsed()
    );
    let formed = wait_voters(plane, &ns, &[0, 1, 2], 60);
    let events = common::node::helper_events(plane, &ns);
    assert!(
        events
            .iter()
            .any(|(reason, message)| reason == "MemberFormatted"
                && message.starts_with("kafka-controller-2: ")
                && message.contains("kafka-controller-raft-formed")),
        "controller 2 formatted as an observer because the record says the cluster formed: {events:?}"
    );
    assert!(
        events.iter().any(|(reason, _)| reason == "MemberReplaced"),
        "a MemberReplaced Event: {events:?}"
    );
    sent.push("after-a-lost-volume".to_owned());
    produce(plane, &ns, &sent[4]);

    // A missed leave: 3 → 5, then the helpers lose their API access, then 5 → 3. Neither
    // leave can tell a scale-down from a restart, so both keep their voters.
    scale_statefulset(plane, &ns, CONTROLLERS, 5);
    pods_ready(plane, &ns, &pods(5));
    wait_voters(plane, &ns, &[0, 1, 2, 3, 4], 240);
    let (ok, _, err) = run(
        plane,
        &[
            "delete",
            "rolebinding",
            "-n",
            &ns,
            "kafka-controller-raft-member",
        ],
        None,
    );
    assert!(ok, "{err}");
    scale_statefulset(plane, &ns, CONTROLLERS, 3);
    wait_gone(plane, &ns, &["kafka-controller-3", "kafka-controller-4"]);
    // (When 3 or 4 led, the other three elect a new leader first.)
    let kept = wait(plane, &ns, 60, "the quorum did not answer", || {
        voters(plane, &ns, "kafka-controller-0").ok()
    });
    assert_eq!(
        kept.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2, 3, 4],
        "both leaves kept their voters while the helpers could not read the StatefulSet"
    );
    let stale = wait(
        plane,
        &ns,
        90,
        "check did not name the stale voters",
        || {
            let (passed, out) = check(plane, &ns);
            (!passed
                && out.contains("stale member kafka-controller-3")
                && out.contains("stale member kafka-controller-4"))
            .then_some(out)
        },
    );
    eprintln!("check while the leaves were missed:\n{stale}");
    sent.push("while-two-voters-are-stale".to_owned());
    produce(plane, &ns, &sent[5]);

    // Access back: within 120 s the voters are exactly 0,1,2 again.
    apply(&manifest);
    let restored = Instant::now();
    let repaired = wait_voters(plane, &ns, &[0, 1, 2], 120);
    eprintln!(
        "the sidecar repaired both missed leaves {:.1?} after access was restored",
        restored.elapsed()
    );
    assert_eq!(repaired, formed);
    let events = common::node::helper_events(plane, &ns);
    let repairs = events
        .iter()
        .filter(|(reason, _)| reason == "MemberRepaired")
        .count();
    assert!(repairs >= 2, "MemberRepaired Events: {events:?}");
    assert!(
        events.iter().any(|(reason, _)| reason == "MemberJoined"),
        "a MemberJoined Event for the scale-up: {events:?}"
    );
    sent.push("after-the-repair".to_owned());
    produce(plane, &ns, &sent[6]);

    // A controller volume lost while the whole quorum was stopped.
    a_volume_lost_while_stopped(plane, &ns, &repaired);
    sent.push("after-a-volume-lost-while-stopped".to_owned());
    produce(plane, &ns, &sent[7]);

    // Every acknowledged message is there.
    assert_eq!(
        consume(plane, &ns, sent.len()),
        sent,
        "every message produced with acks=all is consumed"
    );

    let (passed, out) = wait(plane, &ns, 60, "check did not pass", || {
        let (passed, out) = check(plane, &ns);
        passed.then_some((passed, out))
    });
    assert!(passed);
    assert!(
        out.contains("3 members: kafka-controller-0, kafka-controller-1, kafka-controller-2"),
        "{out}"
    );
}

/// Every message on the topic, read through the broker; `count` are expected.
fn consume(plane: &ControlPlane, ns: &str, count: usize) -> Vec<String> {
    let (ok, consumed, err) = in_pod(
        plane,
        ns,
        "kafka-broker-0",
        None,
        &[
            "/opt/kafka/bin/kafka-console-consumer.sh",
            "--bootstrap-server",
            "localhost:9092",
            "--topic",
            TOPIC,
            "--from-beginning",
            "--max-messages",
            &count.to_string(),
            "--timeout-ms",
            "60000",
        ],
    );
    assert!(ok, "consuming: {consumed}{err}\n{}", report(plane, ns));
    consumed.lines().map(str::to_owned).collect()
}

/// A controller volume lost while the quorum was stopped: with `whenScaled: Retain`, the
/// controllers scaled to 0, controller 0's PVC deleted, 1 replica for a minute, then 3. The
/// record that the cluster formed is what tells this from a new cluster's first start when
/// no controller answers: without it, controller 0 took the silence for a first start and
/// formatted as the old voter 0 (its derived directory id) with an empty log. With it,
/// controller 0 starts as an observer with a new directory id, waits alone, and is swapped
/// in as voter 0 once the others are back.
fn a_volume_lost_while_stopped(plane: &ControlPlane, ns: &str, formed: &BTreeMap<i64, String>) {
    let record = wait(plane, ns, 60, "no record that the cluster formed", || {
        common::controlplane::get(plane, ns, "configmap/kafka-controller-raft-formed")
    });
    assert!(
        record["data"]["members"]
            .as_str()
            .is_some_and(|m| m.contains("kafka-controller-0")),
        "{record:#}"
    );
    let (ok, _, err) = run(
        plane,
        &[
            "patch",
            "statefulset",
            CONTROLLERS,
            "-n",
            ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Retain"}}}"#,
        ],
        None,
    );
    assert!(ok, "{err}");
    let controllers: Vec<String> = (0..3).map(|i| format!("{CONTROLLERS}-{i}")).collect();
    scale_statefulset(plane, ns, CONTROLLERS, 0);
    wait_gone(plane, ns, &controllers);
    let (ok, _, err) = run(
        plane,
        &[
            "delete",
            "pvc",
            "-n",
            ns,
            "data-kafka-controller-0",
            "--timeout=90s",
        ],
        None,
    );
    assert!(ok, "{err}");
    let formatted_before = common::node::helper_events(plane, ns)
        .iter()
        .filter(|(r, m)| r == "MemberFormatted" && m.starts_with("kafka-controller-0: "))
        .count();
    scale_statefulset(plane, ns, CONTROLLERS, 1);
    let formatted = wait(
        plane,
        ns,
        120,
        "controller 0 did not format its new volume",
        || {
            common::node::helper_events(plane, ns)
                .into_iter()
                .filter(|(r, m)| r == "MemberFormatted" && m.starts_with("kafka-controller-0: "))
                .nth(formatted_before)
                .map(|(_, m)| m)
        },
    );
    assert!(
        formatted.contains("kafka-controller-raft-formed") && formatted.contains("observer"),
        "controller 0 formatted as an observer because the cluster formed before: {formatted}"
    );
    // (The Event comes from the join container; Kafka's own container starts after it.)
    let meta = wait(
        plane,
        ns,
        120,
        "controller 0's container did not start",
        || {
            let (ok, meta, _) = in_pod(
                plane,
                ns,
                "kafka-controller-0",
                None,
                &["cat", "/var/lib/kafka/data/meta.properties"],
            );
            ok.then_some(meta)
        },
    );
    let old_dir = formed[&0].clone();
    assert!(
        !meta.contains(&format!("directory.id={old_dir}")),
        "controller 0 must not reuse voter 0's directory id {old_dir}:\n{meta}"
    );
    // A minute with controller 0 alone: an observer with no leader to follow.
    let held = Instant::now();
    while held.elapsed() < std::time::Duration::from_secs(60) {
        let (_, again, _) = in_pod(
            plane,
            ns,
            "kafka-controller-0",
            None,
            &["cat", "/var/lib/kafka/data/meta.properties"],
        );
        assert!(
            again.is_empty() || again == meta,
            "meta.properties changed while alone:\n{again}"
        );
        std::thread::sleep(std::time::Duration::from_secs(10));
    }

    scale_statefulset(plane, ns, CONTROLLERS, 3);
    pods_ready(plane, ns, &pods(3));
    let step = Instant::now();
    let swapped = wait(
        plane,
        ns,
        240,
        "controller 0 was not swapped in with a new directory id",
        || {
            let listed = voters(plane, ns, "kafka-controller-1").ok()?;
            (listed.keys().copied().collect::<Vec<_>>() == [0, 1, 2] && listed[&0] != old_dir)
                .then_some(listed)
        },
    );
    eprintln!(
        "controller 0 (volume lost while stopped) a voter again with directory id {} {:.0?} after the scale to 3",
        swapped[&0],
        step.elapsed()
    );
    for id in [1, 2] {
        assert_eq!(
            swapped[&id], formed[&id],
            "voter {id} kept its directory id"
        );
    }
}
