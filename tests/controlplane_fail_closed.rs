//! With the webhook down, Raft StatefulSets cannot be changed (failurePolicy: Fail) and
//! everything the webhooks do not select still applies.

mod common;

use common::controlplane::{control_plane, eventually, get, namespace, run, Webhook};

#[test]
fn a_dead_webhook_fails_closed_for_raft_workloads_only() {
    let plane = control_plane();
    let mut webhook = Webhook::start(plane, "fail-closed");
    webhook.register(plane);
    let ns = namespace(plane, "failclosed", true);
    let example = common::read("examples/ratis-app.yaml");
    let applied = eventually(30, || {
        let (ok, _, _) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(&example));
        ok.then_some(())
    });
    assert!(
        applied.is_some(),
        "the webhook admits the example while it runs"
    );
    assert!(
        webhook
            .metrics()
            .contains("raft_injector_admission_requests_total{"),
        "requests are counted"
    );

    let stopping = std::time::Instant::now();
    let status = webhook.stop().expect("the webhook exits");
    assert!(
        status.success(),
        "SIGTERM is a clean shutdown, not a failure: {status}"
    );
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(15),
        "shutdown took {:?}",
        stopping.elapsed()
    );

    let changed = example.replace("replicas: 3", "replicas: 5");
    let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(&changed));
    assert!(!ok, "a Raft StatefulSet changed while its webhook was down");
    assert!(stderr.contains("failed calling webhook"), "{stderr}");
    assert!(stderr.contains("raft-injector.io"), "{stderr}");
    assert_eq!(
        get(plane, &ns, "statefulset/counter").unwrap()["spec"]["replicas"],
        3
    );

    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n        - {name: web, image: nginx}\n";
    let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(deployment));
    assert!(ok, "an unrelated Deployment must still apply: {stderr}");
}
