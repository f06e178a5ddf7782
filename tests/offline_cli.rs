//! `raft-injector validate` and `inject` as a user runs them: several `-f`, directories,
//! `-R`, `kind: List`, namespaces, empty and hostile input.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs the binary with no kubeconfig unless `kubeconfig` names one.
fn raft_injector(args: &[&str], stdin: Option<&str>, kubeconfig: Option<&Path>) -> Out {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_raft-injector"));
    command
        .args(args)
        .current_dir(common::root())
        .env("HOME", home.path())
        .env(
            "KUBECONFIG",
            kubeconfig.unwrap_or(Path::new("/nonexistent/kubeconfig")),
        )
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("raft-injector runs");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A huge input may be refused before it is all written.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().unwrap();
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The etcd example split into its Service and the rest, in a temp dir.
fn split_etcd(dir: &Path) {
    let text = common::read("examples/etcd.yaml");
    let (mut services, mut rest) = (Vec::new(), Vec::new());
    for doc in text.split("\n---\n") {
        if doc.contains("kind: Service\n") {
            services.push(doc);
        } else {
            rest.push(doc);
        }
    }
    std::fs::write(dir.join("service.yaml"), services.join("\n---\n")).unwrap();
    std::fs::write(dir.join("statefulset.yaml"), rest.join("\n---\n")).unwrap();
}

#[test]
fn a_service_in_another_file_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    split_etcd(dir.path());
    let (svc, sts) = (
        dir.path().join("service.yaml"),
        dir.path().join("statefulset.yaml"),
    );
    let (svc, sts) = (svc.to_str().unwrap(), sts.to_str().unwrap());

    let alone = raft_injector(&["validate", "-f", sts], None, None);
    assert!(
        !alone.ok && alone.stderr.contains("does not exist"),
        "{}",
        alone.stderr
    );
    let both = raft_injector(&["validate", "-f", svc, "-f", sts], None, None);
    assert!(both.ok, "{}", both.stderr);
    assert!(
        both.stderr.contains("1 Raft StatefulSet(s) pass"),
        "{}",
        both.stderr
    );
    let injected = raft_injector(
        &["inject", "-f", svc, "-f", sts, "-n", "default"],
        None,
        None,
    );
    assert!(injected.ok, "{}", injected.stderr);
    assert!(
        injected.stdout.contains("RAFT_PEERS"),
        "{}",
        injected.stdout
    );
    assert!(
        injected.stdout.contains("kind: Service\n"),
        "both files are printed"
    );
}

#[test]
fn directories_are_read_and_recursed_with_dash_r() {
    let dir = tempfile::tempdir().unwrap();
    split_etcd(dir.path());
    let nested = dir.path().join("nested");
    std::fs::create_dir(&nested).unwrap();
    // A denied object below the top level: seen only with -R.
    std::fs::copy(
        common::root().join("examples/denied-even-replicas.yaml"),
        nested.join("even.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest: [").unwrap();
    let path = dir.path().to_str().unwrap();

    let flat = raft_injector(&["validate", "-f", path], None, None);
    assert!(flat.ok, "{}", flat.stderr);
    let deep = raft_injector(&["validate", "-R", "-f", path], None, None);
    assert!(!deep.ok, "-R reads nested/even.yaml");
    assert!(
        deep.stderr.contains("spec.replicas is 4"),
        "{}",
        deep.stderr
    );
}

#[test]
fn dash_r_follows_each_symlinked_directory_once_and_ends_on_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    split_etcd(&manifests);
    // A loop (a link to its own parent) and many links to one directory: without a
    // visited set the walk never ends or grows exponentially.
    std::os::unix::fs::symlink(&manifests, manifests.join("loop")).unwrap();
    for i in 0..20 {
        std::os::unix::fs::symlink(&manifests, dir.path().join(format!("link-{i}"))).unwrap();
    }
    let path = dir.path().to_str().unwrap();
    let started = std::time::Instant::now();
    let out = raft_injector(&["inject", "-R", "-f", path], None, None);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout.matches("kind: StatefulSet").count(),
        1,
        "each manifest read once (in {:?}):\n{}",
        started.elapsed(),
        out.stdout
    );
}

#[test]
fn a_list_is_checked_item_by_item_and_injected_in_place() {
    let docs = common::yaml_docs("examples/etcd.yaml");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let out = raft_injector(
        &["inject", "-f", "-", "-n", "default"],
        Some(&list.to_string()),
        None,
    );
    assert!(out.ok, "{}", out.stderr);
    let printed: serde_json::Value = serde_saphyr::from_str(&out.stdout).unwrap();
    assert_eq!(printed["kind"], "List");
    let sts = printed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "StatefulSet")
        .unwrap();
    assert!(sts["metadata"]["annotations"]["raft-injector.io/status"].is_string());

    let even = common::yaml_docs("examples/denied-even-replicas.yaml");
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": even});
    let out = raft_injector(&["validate", "-f", "-"], Some(&list.to_string()), None);
    assert!(!out.ok, "a denied item inside a List fails validation");
    assert!(out.stderr.contains("spec.replicas is 4"), "{}", out.stderr);
}

#[test]
fn empty_input_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "# nothing here\n---\n").unwrap();
    for args in [
        vec!["validate", "-f", empty.to_str().unwrap()],
        vec!["inject", "-f", empty.to_str().unwrap()],
        vec!["validate", "-f", dir.path().join("none").to_str().unwrap()],
    ] {
        let out = raft_injector(&args, None, None);
        assert!(!out.ok, "{args:?} passed");
        assert!(
            out.stderr.contains("no Kubernetes objects") || out.stderr.contains("No such file"),
            "{args:?}: {}",
            out.stderr
        );
    }
    let empty_dir = tempfile::tempdir().unwrap();
    let out = raft_injector(
        &["validate", "-f", empty_dir.path().to_str().unwrap()],
        None,
        None,
    );
    assert!(
        !out.ok && out.stderr.contains("no Kubernetes objects"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_namespace_comes_from_the_flag_then_the_object_then_the_kubeconfig_else_a_warning() {
    let example = common::read("examples/etcd.yaml");

    let unknown = raft_injector(&["inject", "-f", "-"], Some(&example), None);
    assert!(unknown.ok, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("no namespace is known") && unknown.stderr.contains("-n NAMESPACE"),
        "{}",
        unknown.stderr
    );

    let flag = raft_injector(&["inject", "-n", "prod", "-f", "-"], Some(&example), None);
    assert!(flag.ok, "{}", flag.stderr);
    assert!(flag
        .stdout
        .contains("etcd-0.etcd.prod.svc.cluster.local:2380"));
    assert!(
        !flag.stderr.contains("no namespace is known"),
        "{}",
        flag.stderr
    );

    let home = tempfile::tempdir().unwrap();
    let kubeconfig = home.path().join("config");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts:\n- name: c\n  context: {cluster: x, user: y, namespace: staging}\ncurrent-context: c\n",
    )
    .unwrap();
    let context = raft_injector(&["inject", "-f", "-"], Some(&example), Some(&kubeconfig));
    assert!(context.ok, "{}", context.stderr);
    assert!(context
        .stdout
        .contains("etcd-0.etcd.staging.svc.cluster.local:2380"));

    // Every object of the file in namespace qa: the objects' own namespace wins.
    let pinned = example.replace("metadata:\n  name:", "metadata:\n  namespace: qa\n  name:");
    assert_ne!(
        pinned, example,
        "the fixture's objects have metadata.name first"
    );
    let object = raft_injector(&["inject", "-f", "-"], Some(&pinned), Some(&kubeconfig));
    assert!(object.ok, "{}", object.stderr);
    assert!(object
        .stdout
        .contains("etcd-0.etcd.qa.svc.cluster.local:2380"));
    let conflict = raft_injector(&["inject", "-n", "prod", "-f", "-"], Some(&pinned), None);
    assert!(!conflict.ok);
    assert!(
        conflict
            .stderr
            .contains("metadata.namespace is qa but --namespace is prod"),
        "{}",
        conflict.stderr
    );
}

#[test]
fn hostile_replica_counts_fail_fast_offline() {
    let example = common::read("examples/etcd.yaml");
    for replicas in ["2147483647", "99999", "-1", "100"] {
        let manifest = example.replace("replicas: 3", &format!("replicas: {replicas}"));
        assert_ne!(manifest, example);
        let started = Instant::now();
        let out = raft_injector(
            &["inject", "-n", "default", "-f", "-"],
            Some(&manifest),
            None,
        );
        let took = started.elapsed();
        assert!(!out.ok, "{replicas} was injected");
        assert!(out.stdout.is_empty());
        assert!(
            out.stderr.contains(&format!("spec.replicas is {replicas}")),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.len() < 4096,
            "{} bytes of stderr",
            out.stderr.len()
        );
        eprintln!("inject with replicas {replicas}: exit 1 after {took:?}");
    }
}

#[test]
fn deep_or_huge_yaml_is_refused_quickly_with_a_clear_message() {
    // 100,000 levels of nesting, block and flow style.
    let block: String = "- ".repeat(100_000) + "x\n";
    let flow: String = "[".repeat(100_000);
    for (what, text) in [("block", block), ("flow", flow)] {
        let started = Instant::now();
        let out = raft_injector(&["validate", "-f", "-"], Some(&text), None);
        assert!(!out.ok, "{what}");
        assert!(
            out.stderr.contains("document 1 is not valid YAML"),
            "{what}: {}",
            out.stderr
        );
        assert!(out.stderr.len() < 1024, "{what}: one line, not a snippet");
        eprintln!(
            "{what} nesting of 100,000: refused after {:?}",
            started.elapsed()
        );
    }
    // A billion laughs: aliases that would expand to millions of nodes.
    let mut laughs = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    for (name, prev) in [
        ("b", "a"),
        ("c", "b"),
        ("d", "c"),
        ("e", "d"),
        ("f", "e"),
        ("g", "f"),
        ("h", "g"),
    ] {
        let refs = vec![format!("*{prev}"); 9].join(",");
        laughs.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    let out = raft_injector(&["validate", "-f", "-"], Some(&laughs), None);
    assert!(
        !out.ok && out.stderr.contains("not valid YAML"),
        "{}",
        out.stderr
    );

    // More than the input limit on stdin.
    let huge = "#".repeat(33 * 1024 * 1024);
    let out = raft_injector(&["validate", "-f", "-"], Some(&huge), None);
    assert!(
        !out.ok && out.stderr.contains("larger than"),
        "{}",
        out.stderr
    );
}

#[test]
fn inject_of_a_denied_manifest_prints_nothing_to_stdout() {
    let out = raft_injector(
        &[
            "inject",
            "-n",
            "default",
            "-f",
            "examples/denied-even-replicas.yaml",
        ],
        None,
        None,
    );
    assert!(!out.ok);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}
