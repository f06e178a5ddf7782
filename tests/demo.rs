//! `make demo` is what a newcomer runs first, often more than once: it must succeed every
//! time on the same machine, end with a 3-member etcd cluster formed by injected pods after
//! a scale 3→5→3, and show a denial and a warning as kubectl prints them. Under `make test`
//! it reuses the running local cluster (one node per machine), as it does for a user whose
//! cluster is already up.

mod common;

use std::process::Command;

#[test]
fn the_demo_runs_twice_in_a_row() {
    // The shared local cluster, so the demo reuses it rather than starting a second node.
    let plane = common::controlplane::control_plane();
    common::controlplane::delete_earlier_test_namespaces(plane);
    for run in 1..=2 {
        let out = Command::new("bash")
            .arg(common::root().join("scripts/demo.sh"))
            .arg(&plane.dir)
            .output()
            .expect("the demo runs");
        // kubectl prints denials and warnings on stderr, interleaved with the demo's stdout.
        let stdout = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "run {run} failed:\n{stdout}");
        assert!(
            stdout.contains("Error from server (Forbidden)")
                && stdout.contains("spec.replicas is 4")
                && stdout.contains("Warning: StatefulSet demo/quorum"),
            "run {run} did not show the denial and the warning:\n{stdout}"
        );
        // The member table after 3→5→3 lists exactly etcd-0..2, all started.
        let tables: Vec<&str> = stdout.split("etcdctl member list -w table").collect();
        assert_eq!(tables.len(), 4, "three member lists shown:\n{stdout}");
        let last = tables[3].split("What each member").next().unwrap();
        for member in ["etcd-0", "etcd-1", "etcd-2"] {
            assert!(
                last.contains(&format!("| started | {member} |")),
                "{member} in:\n{last}"
            );
        }
        assert!(
            !last.contains("etcd-3") && !last.contains("etcd-4"),
            "{last}"
        );
        assert!(
            tables[2].contains("| etcd-4 |"),
            "5 members after the scale-up:\n{}",
            tables[2]
        );
        assert!(stdout.contains("hello from etcd-0"), "{stdout}");
        assert!(
            stdout.contains("MemberRemoved") && stdout.contains("MemberJoined"),
            "{stdout}"
        );
    }
}
