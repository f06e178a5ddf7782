//! The membership through every way a pod can die, on the local cluster's real node, with
//! `examples/etcd.yaml`: restarts, rollouts, evictions and a full stop change no member; a
//! scale-down changes exactly the members it should, also when a leave is missed (repaired
//! by the `member reconcile` sidecar) or a remaining member is down at the same time;
//! members that come back on kept volumes join anew with their old data set aside; a
//! writing client loses no acknowledged write across scale cycles; a webhook replica going
//! away does not stop admission.
//!
//! Each test asserts member lists, member IDs and data, and prints what it measured.
//! `RAFT_SOAK_CYCLES` (default 1; `make soak` sets 10) is the number of 3→5→3 cycles of the
//! writing-client test. Every wait has a deadline, and a failure prints the pods, events
//! and logs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use common::controlplane::{get, namespace, run, ControlPlane};
use common::node::*;
use serde_json::Value;

const THREE: [&str; 3] = ["etcd-0", "etcd-1", "etcd-2"];
const FIVE: [&str; 5] = ["etcd-0", "etcd-1", "etcd-2", "etcd-3", "etcd-4"];

/// A started example in a fresh namespace: three Ready members, their IDs, and some keys.
fn three_members(
    plane: &ControlPlane,
    prefix: &str,
    edit: impl FnOnce(String) -> String,
) -> (String, BTreeMap<String, String>) {
    let ns = namespace(plane, prefix, true);
    apply_etcd(plane, &ns, edit);
    wait_ready(plane, &ns, &THREE);
    let ids = wait_members(plane, &ns, &THREE, &THREE);
    for i in 0..10 {
        put(
            plane,
            &ns,
            THREE[i % 3],
            &format!("/data/{i:02}"),
            &format!("value-{i}"),
        );
    }
    (ns, ids)
}

fn expected_keys() -> BTreeMap<String, String> {
    (0..10)
        .map(|i| (format!("/data/{i:02}"), format!("value-{i}")))
        .collect()
}

fn kubectl(plane: &ControlPlane, args: &[&str]) -> String {
    let (ok, stdout, stderr) = run(plane, args, None);
    assert!(ok, "kubectl {}: {stderr}", args.join(" "));
    stdout
}

/// Events that would mean the membership changed.
fn membership_changes(plane: &ControlPlane, ns: &str) -> Vec<(String, String)> {
    helper_events(plane, ns)
        .into_iter()
        .filter(|(reason, _)| {
            [
                "MemberJoined",
                "MemberRemoved",
                "MemberRepaired",
                "MemberLeaveFailed",
            ]
            .contains(&reason.as_str())
        })
        .collect()
}

fn uid(plane: &ControlPlane, ns: &str, pod: &str) -> Value {
    get(plane, ns, &format!("pod/{pod}"))
        .map(|p| p["metadata"]["uid"].clone())
        .unwrap_or(Value::Null)
}

/// Fails, with what the cluster looked like, when the helper recorded any membership change.
fn no_membership_change(plane: &ControlPlane, ns: &str, stage: &str) {
    let changes = membership_changes(plane, ns);
    assert!(
        changes.is_empty(),
        "no member may be added or removed ({stage}), but the helper recorded {changes:?}\n{}",
        common::node::report(plane, ns)
    );
}

/// Waits until every pod in `pods` is a new pod (other UID than in `before`) and Ready.
fn wait_replaced(plane: &ControlPlane, ns: &str, before: &BTreeMap<String, Value>) {
    wait(plane, ns, 300, "the pods were not all replaced", || {
        before
            .iter()
            .all(|(pod, old)| {
                let now = uid(plane, ns, pod);
                !now.is_null() && now != *old
            })
            .then_some(())
    });
    let pods: Vec<&str> = before.keys().map(String::as_str).collect();
    wait_ready(plane, ns, &pods);
}

#[test]
fn restarts_rollouts_evictions_and_a_full_stop_change_no_member() {
    let plane = installed();
    let (ns, ids) = three_members(plane, "keep", |m| m);
    no_membership_change(plane, &ns, "after the cluster formed");
    let mut report = Vec::new();

    // A rolling restart replaces every pod, one at a time; every member stays.
    let before: BTreeMap<String, Value> = THREE
        .iter()
        .map(|p| (p.to_string(), uid(plane, &ns, p)))
        .collect();
    let started = Instant::now();
    kubectl(
        plane,
        &["rollout", "restart", "-n", &ns, "statefulset/etcd"],
    );
    wait_replaced(plane, &ns, &before);
    assert_eq!(
        wait_members(plane, &ns, &THREE, &THREE),
        ids,
        "a rollout changes no member"
    );
    no_membership_change(plane, &ns, "after the rollout restart");
    report.push(format!(
        "rollout restart: 3 pods replaced, member IDs unchanged, {:.0?}",
        started.elapsed()
    ));
    for pod in THREE {
        let kept = wait_event(plane, &ns, "MemberKept", pod);
        assert!(kept.contains("below spec.replicas 3"), "{kept}");
    }
    // The restarted template went through the webhook again and is unchanged by it.
    let template = get(plane, &ns, "statefulset/etcd").unwrap()["spec"]["template"]["spec"].clone();
    let inits: Vec<&str> = template["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        inits,
        [
            "raft-injector",
            "raft-injector-join",
            "raft-injector-reconcile"
        ]
    );

    // An eviction through the Eviction API, with a PDB: the member stays, and the PDB holds
    // a second eviction back while the first member is away.
    let pdb = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: etcd\nspec:\n  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app: etcd\n";
    let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(pdb));
    assert!(ok, "{stderr}");
    wait(
        plane,
        &ns,
        60,
        "the PDB did not allow one disruption",
        || {
            let pdb = get(plane, &ns, "pdb/etcd")?;
            (pdb["status"]["disruptionsAllowed"] == 1).then_some(())
        },
    );
    let evict = |pod: &str| {
        let body = format!(
            r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"{ns}"}}}}"#
        );
        let path = format!("/api/v1/namespaces/{ns}/pods/{pod}/eviction");
        run(plane, &["create", "--raw", &path, "-f", "-"], Some(&body))
    };
    let old = uid(plane, &ns, "etcd-2");
    let started = Instant::now();
    let (ok, _, stderr) = evict("etcd-2");
    assert!(ok, "eviction of etcd-2: {stderr}");
    let (ok, _, stderr) = evict("etcd-1");
    assert!(
        !ok && stderr.contains("disruption budget"),
        "a second eviction while etcd-2 is away must wait for the PDB: {stderr}"
    );
    wait(plane, &ns, 240, "etcd-2 did not come back", || {
        let now = uid(plane, &ns, "etcd-2");
        (!now.is_null() && now != old).then_some(())
    });
    wait_ready(plane, &ns, &THREE);
    assert_eq!(
        wait_members(plane, &ns, &THREE, &THREE),
        ids,
        "an eviction changes no member"
    );
    no_membership_change(plane, &ns, "after the eviction");
    report.push(format!(
        "eviction of etcd-2 (second eviction refused by the PDB): member IDs unchanged, {:.0?}",
        started.elapsed()
    ));

    // Scale to 0 and back: the whole cluster stops and comes back with its data. With
    // whenScaled: Delete the volumes would go with the pods, so that is denied first.
    let (ok, _, stderr) = run(
        plane,
        &["scale", "-n", &ns, "statefulset/etcd", "--replicas=0"],
        None,
    );
    assert!(
        !ok && stderr.contains("whenScaled is Delete") && stderr.contains("set whenScaled: Retain"),
        "stopping with whenScaled: Delete must be denied: {stderr}"
    );
    kubectl(
        plane,
        &[
            "patch",
            "-n",
            &ns,
            "statefulset/etcd",
            "--type=merge",
            "-p",
            r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Retain"}}}"#,
        ],
    );
    let started = Instant::now();
    scale(plane, &ns, 0);
    wait(plane, &ns, 120, "the pods did not all stop", || {
        get(plane, &ns, "pods")?["items"]
            .as_array()?
            .is_empty()
            .then_some(())
    });
    for pod in THREE {
        let kept = helper_events(plane, &ns).into_iter().any(|(r, m)| {
            r == "MemberKept"
                && m.starts_with(&format!("{pod}: "))
                && m.contains("spec.replicas is 0")
        });
        assert!(
            kept,
            "{pod} kept its membership on the way to 0\n{}",
            common::node::report(plane, &ns)
        );
    }
    scale(plane, &ns, 3);
    wait_ready(plane, &ns, &THREE);
    assert_eq!(
        wait_members(plane, &ns, &THREE, &THREE),
        ids,
        "0 and back changes no member"
    );
    assert_eq!(
        keys(plane, &ns, "etcd-1", "/data/"),
        expected_keys(),
        "every key survived"
    );
    report.push(format!(
        "scale 3→0→3 (denied with whenScaled: Delete; done after switching to Retain): member IDs unchanged, 10 of 10 keys, {:.0?}",
        started.elapsed()
    ));

    no_membership_change(plane, &ns, "after scale 3→0→3");
    assert_eq!(
        restarted(plane, &ns),
        Vec::<String>::new(),
        "no container restarted"
    );
    eprintln!("{}", report.join("\n"));
    print_story(plane, &ns);
    kubectl(plane, &["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn a_missed_leave_is_repaired_and_a_member_down_during_a_scale_down_keeps_quorum() {
    let plane = installed();
    let (ns, ids) = three_members(plane, "repair", |m| m);
    let mut report = Vec::new();
    scale(plane, &ns, 5);
    wait_ready(plane, &ns, &FIVE);
    wait_members(plane, &ns, &FIVE, &FIVE);

    // 5→3 with etcd-4 cut off the network, force-deleted while its preStop is still
    // trying: its leave cannot finish, so etcd keeps a member that never comes back.
    partition(plane, &ns, "etcd-4");
    scale(plane, &ns, 3);
    wait(plane, &ns, 60, "etcd-4 did not start terminating", || {
        let pod = get(plane, &ns, "pod/etcd-4")?;
        (!pod["metadata"]["deletionTimestamp"].is_null()).then_some(())
    });
    kubectl(
        plane,
        &[
            "delete",
            "pod",
            "-n",
            &ns,
            "etcd-4",
            "--grace-period=0",
            "--force",
        ],
    );
    let forced = Instant::now();
    let repaired = wait(
        plane,
        &ns,
        60,
        "the stale member etcd-4 was not removed within 60s",
        || {
            let seen = members(plane, &ns, "etcd-0")?;
            (names(&seen) == THREE).then_some(forced.elapsed())
        },
    );
    // Told by the sidecar next to whichever member leads.
    let repair = wait(plane, &ns, 30, "no MemberRepaired Event for etcd-4", || {
        helper_events(plane, &ns)
            .into_iter()
            .find(|(r, m)| r == "MemberRepaired" && m.contains("stale member etcd-4"))
            .map(|(_, m)| m)
    });
    assert!(repair.contains("spec.replicas 3"), "{repair}");
    wait_ready(plane, &ns, &THREE);
    assert_eq!(
        wait_members(plane, &ns, &THREE, &THREE),
        ids,
        "the original members remain"
    );
    let removed3 = wait_event(plane, &ns, "MemberRemoved", "etcd-3");
    assert!(removed3.contains("spec.replicas 3"), "{removed3}");
    report.push(format!(
        "missed leave (etcd-4 partitioned, force-deleted): stale member removed {repaired:.1?} after the force delete; \
         etcd-3's own leave: {removed3}"
    ));

    // 5→3 again, and etcd-1 deleted at the same moment: nothing that breaks quorum is
    // removed, and the cluster converges to the three original members.
    scale(plane, &ns, 5);
    wait_ready(plane, &ns, &FIVE);
    wait_members(plane, &ns, &FIVE, &FIVE);
    let started = Instant::now();
    scale(plane, &ns, 3);
    kubectl(
        plane,
        &["delete", "pod", "-n", &ns, "etcd-1", "--wait=false"],
    );
    wait_ready(plane, &ns, &THREE);
    assert_eq!(
        wait_members(plane, &ns, &THREE, &THREE),
        ids,
        "the original members remain, etcd-1 included"
    );
    let converged = started.elapsed();
    assert_eq!(
        keys(plane, &ns, "etcd-2", "/data/"),
        expected_keys(),
        "every key survived"
    );
    for (reason, message) in membership_changes(plane, &ns) {
        let subject = message.split(':').next().unwrap_or_default();
        if reason == "MemberRemoved" || reason == "MemberLeaveFailed" {
            assert!(
                ["etcd-3", "etcd-4"].contains(&subject),
                "{reason} {message}"
            );
        }
        if reason == "MemberRepaired" {
            assert!(
                message.contains("stale member etcd-3") || message.contains("stale member etcd-4"),
                "{message}"
            );
        }
    }
    let health = exec(
        plane,
        &ns,
        "etcd-0",
        &["etcdctl", "endpoint", "health", "--cluster"],
    )
    .unwrap_or_else(|e| e);
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    report.push(format!("5→3 with etcd-1 deleted at once: 3 of 3 healthy, original IDs, 10 of 10 keys, {converged:.0?}"));
    eprintln!("{}", report.join("\n"));
    print_story(plane, &ns);
    kubectl(plane, &["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn members_returning_on_kept_volumes_join_anew_with_their_old_data_set_aside() {
    let plane = installed();
    let (ns, _) = three_members(plane, "retain", |m| {
        m.replace("whenScaled: Delete", "whenScaled: Retain")
    });
    scale(plane, &ns, 5);
    wait_ready(plane, &ns, &FIVE);
    let first = wait_members(plane, &ns, &FIVE, &FIVE);
    scale(plane, &ns, 3);
    wait_ready(plane, &ns, &THREE);
    wait_members(plane, &ns, &THREE, &THREE);
    let (_, claims, _) = run(plane, &["get", "pvc", "-n", &ns, "-o", "name"], None);
    assert!(
        claims.contains("data-etcd-4"),
        "Retain keeps the volumes: {claims}"
    );

    let started = Instant::now();
    scale(plane, &ns, 5);
    wait_ready(plane, &ns, &FIVE);
    let again = wait_members(plane, &ns, &FIVE, &FIVE);
    for pod in THREE {
        assert_eq!(again[pod], first[pod], "{pod} kept its ID");
    }
    for pod in ["etcd-3", "etcd-4"] {
        assert_ne!(again[pod], first[pod], "{pod} joined as a new member");
        let aside = wait_event(plane, &ns, "MemberDataSetAside", pod);
        assert!(aside.contains("member.removed-"), "{aside}");
    }
    // The old data is there, beside the new.
    for pod in ["etcd-3", "etcd-4"] {
        let pvc = get(plane, &ns, &format!("pvc/data-{pod}")).unwrap();
        let volume = pvc["spec"]["volumeName"].as_str().unwrap().to_owned();
        let pv = get(plane, "", &format!("pv/{volume}")).unwrap();
        let path = std::path::PathBuf::from(pv["spec"]["hostPath"]["path"].as_str().unwrap());
        let entries: Vec<String> = std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert!(entries.iter().any(|e| e == "member"), "{pod}: {entries:?}");
        assert!(
            entries.iter().any(|e| e.starts_with("member.removed-")),
            "{pod}: {entries:?}"
        );
    }
    assert_eq!(
        keys(plane, &ns, "etcd-4", "/data/"),
        expected_keys(),
        "the new members serve every key"
    );
    assert_eq!(
        restarted(plane, &ns),
        Vec::<String>::new(),
        "no container restarted"
    );
    eprintln!(
        "Retain 3→5→3→5: etcd-3 and etcd-4 rejoined with new IDs, old data kept aside, {:.0?}",
        started.elapsed()
    );
    print_story(plane, &ns);
    kubectl(plane, &["delete", "namespace", &ns, "--wait=false"]);
}

/// Writes keys through `service` (etcd's JSON gateway behind a ClusterIP Service) until
/// `stop`, a time bound or a count bound; returns the keys etcd acknowledged and how many
/// writes failed.
fn write_until(service: SocketAddr, stop: &AtomicBool, limit: Duration) -> (Vec<String>, usize) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let started = Instant::now();
    let (mut acknowledged, mut failed) = (Vec::new(), 0);
    for i in 0..200_000u32 {
        if stop.load(Ordering::Relaxed) || started.elapsed() > limit {
            break;
        }
        let key = format!("/soak/{i:06}");
        let body = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            b64.encode(&key),
            b64.encode(i.to_string())
        );
        let request = format!(
            "POST /v3/kv/put HTTP/1.1\r\nHost: etcd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&service, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(request.as_bytes())?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        })();
        match answer {
            Ok(text) if text.starts_with("HTTP/1.1 200") && text.contains("\"revision\"") => {
                acknowledged.push(key)
            }
            _ => {
                failed += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    (acknowledged, failed)
}

#[test]
fn a_writing_client_loses_no_acknowledged_write_across_scale_cycles() {
    let cycles: u32 = std::env::var("RAFT_SOAK_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let plane = installed();
    let (ns, ids) = three_members(plane, "soak", |m| m);
    let client = "apiVersion: v1\nkind: Service\nmetadata:\n  name: etcd-client\nspec:\n  selector:\n    app: etcd\n  ports:\n    - port: 2379\n";
    let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(client));
    assert!(ok, "{stderr}");
    let ip = get(plane, &ns, "service/etcd-client").unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_owned();
    let service: SocketAddr = format!("{ip}:2379").parse().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            write_until(service, &stop, Duration::from_secs(600 * u64::from(cycles)))
        })
    };
    let mut times = Vec::new();
    for cycle in 1..=cycles {
        let started = Instant::now();
        scale(plane, &ns, 5);
        wait_ready(plane, &ns, &FIVE);
        wait_members(plane, &ns, &FIVE, &FIVE);
        let up = started.elapsed();
        scale(plane, &ns, 3);
        wait_ready(plane, &ns, &THREE);
        assert_eq!(
            wait_members(plane, &ns, &THREE, &THREE),
            ids,
            "cycle {cycle}: the original members remain"
        );
        times.push((up, started.elapsed() - up));
    }
    stop.store(true, Ordering::Relaxed);
    let (acknowledged, failed) = writer.join().expect("the writer finishes");
    assert!(
        !acknowledged.is_empty(),
        "the client wrote nothing ({failed} failures)\n{}",
        common::node::report(plane, &ns)
    );

    let stored: BTreeSet<String> = keys(plane, &ns, "etcd-0", "/soak/").into_keys().collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|k| !stored.contains(*k))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes are missing, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert_eq!(
        restarted(plane, &ns),
        Vec::<String>::new(),
        "no restart loop"
    );
    assert_eq!(
        names(&members(plane, &ns, "etcd-0").unwrap()),
        THREE,
        "no stale member"
    );
    for (i, (up, down)) in times.iter().enumerate() {
        eprintln!("cycle {}: 3→5 in {up:.0?}, 5→3 in {down:.0?}", i + 1);
    }
    eprintln!(
        "{cycles} cycles: {} writes acknowledged, all present; {failed} writes refused or cut (not acknowledged)",
        acknowledged.len()
    );
    print_story(plane, &ns);
    kubectl(plane, &["delete", "namespace", &ns, "--wait=false"]);
}

#[test]
fn admission_goes_on_while_a_webhook_replica_goes_away() {
    let plane = installed();
    let ns = namespace(plane, "webhook-kill", true);
    let example = common::controlplane::file("examples/etcd.yaml");
    kubectl(plane, &["apply", "-n", &ns, "-f", &example]);

    // Three clients, so that requests keep arriving while the replica goes away even on a
    // busy machine. Each records when it sent each request and whether it was admitted.
    let stop = Arc::new(AtomicBool::new(false));
    let origin = Instant::now();
    let appliers: Vec<_> = (0..3)
        .map(|client| {
            let stop = stop.clone();
            let ns = ns.clone();
            let example = example.clone();
            std::thread::spawn(move || {
                let plane = installed();
                let mut results = Vec::new();
                // Bounded: at most 200 requests or 120 s per client.
                for i in 0..200 {
                    if stop.load(Ordering::Relaxed) || origin.elapsed() > Duration::from_secs(120) {
                        break;
                    }
                    let sent = origin.elapsed();
                    let (ok, _, stderr) = if (i + client) % 2 == 0 {
                        let replicas = if i % 4 < 2 { "5" } else { "3" };
                        run(
                            plane,
                            &[
                                "scale",
                                "-n",
                                &ns,
                                "statefulset/etcd",
                                "--replicas",
                                replicas,
                                "--dry-run=server",
                            ],
                            None,
                        )
                    } else {
                        run(
                            plane,
                            &["apply", "--dry-run=server", "-n", &ns, "-f", &example],
                            None,
                        )
                    };
                    results.push((sent, ok, stderr));
                }
                results
            })
        })
        .collect();
    // Take one webhook replica away the way a drain does, and wait for its replacement.
    std::thread::sleep(Duration::from_secs(2));
    let pods = kubectl(plane, &["get", "pods", "-n", "raft-injector", "-o", "name"]);
    let victim = pods
        .lines()
        .next()
        .expect("a webhook pod")
        .trim_start_matches("pod/")
        .to_owned();
    let deleted_at = origin.elapsed();
    kubectl(
        plane,
        &[
            "delete",
            "pod",
            "-n",
            "raft-injector",
            &victim,
            "--wait=true",
        ],
    );
    wait(
        plane,
        "raft-injector",
        120,
        "the webhook was not back at 2 ready replicas",
        || {
            let d = get(plane, "raft-injector", "deployment/raft-injector")?;
            (d["status"]["readyReplicas"] == 2 && d["status"]["replicas"] == 2).then_some(())
        },
    );
    let ready_at = origin.elapsed();
    let replaced = ready_at - deleted_at;
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(Duration, bool, String)> = appliers
        .into_iter()
        .flat_map(|a| a.join().expect("the applier finishes"))
        .collect();
    let failures: Vec<&String> = results
        .iter()
        .filter(|(_, ok, _)| !ok)
        .map(|(_, _, e)| e)
        .collect();
    let during = results
        .iter()
        .filter(|(sent, _, _)| (deleted_at..ready_at).contains(sent))
        .count();
    assert!(
        during >= 3,
        "only {during} requests were sent while {victim} went away ({replaced:.0?}); too few to mean anything"
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed while {victim} went away, e.g. {:?}",
        failures.len(),
        results.len(),
        failures.first()
    );
    eprintln!(
        "{} admission requests (scale and apply, dry run), {during} of them while {victim} was deleted and replaced in {replaced:.0?}: all admitted",
        results.len()
    );
    print_story(plane, &ns);
    kubectl(plane, &["delete", "namespace", &ns, "--wait=false"]);
}
