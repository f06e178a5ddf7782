//! `make demo` is what a newcomer runs first, often more than once: it must succeed every
//! time on the same machine and show a denial and a warning as kubectl prints them.

mod common;

use std::process::Command;

#[test]
fn the_demo_runs_twice_in_a_row() {
    let dir = tempfile::tempdir().unwrap();
    for run in 1..=2 {
        let out = Command::new("bash")
            .arg(common::root().join("scripts/demo.sh"))
            .arg(dir.path())
            .env("RAFT_INJECTOR_BIN", env!("CARGO_BIN_EXE_raft-injector"))
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
        assert!(stdout.contains("RAFT_CLUSTER_SIZE is still 3"), "{stdout}");
    }
}
