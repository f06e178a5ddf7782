//! Data safety on the local cluster's real node, with etcd shaped as users write it (a
//! seed-style StatefulSet under other names, its data on a volume at /var/run/etcd) and
//! where etcd finds its data directory in the places admission cannot read alone:
//!
//! - `ETCD_DATA_DIR` from a ConfigMap through `envFrom`, etcd run as `command: ["etcd"]`;
//! - `--data-dir "$(DATA_DIR)"` with `DATA_DIR` from a ConfigMap key (`valueFrom`).
//!
//! A deleted pod must come back as the same member (same member ID, no crash loop, its keys
//! readable through it), for a bootstrap member and a scaled-up one. Before the join
//! container shared etcd's environment, the first shape replaced member 1 (the helper looked
//! for `<name>.etcd`, found nothing and re-added it; etcd then crash-looped on its data).
//!
//! Every wait has a deadline; on failure the test prints the pods, their events and logs.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::controlplane::{get, namespace, run, ControlPlane};
use common::node::*;

/// The StatefulSet `store` behind the Service `store-peers`; `container` is the etcd
/// container's command, env and envFrom lines (indented for the container).
fn reshaped_etcd(container: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: store
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: store-raft-member
subjects:
  - kind: ServiceAccount
    name: store
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: raft-injector-member
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: store-env
data:
  ETCD_DATA_DIR: /var/run/etcd/data
  dir: /var/run/etcd/data
---
apiVersion: v1
kind: Service
metadata:
  name: store-peers
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    app.kubernetes.io/name: store
  ports:
    - name: peer
      port: 2380
    - name: client
      port: 2379
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: store
  labels:
    raft-injector.io/raft: "true"
  annotations:
    raft-injector.io/flavor: etcd
spec:
  serviceName: store-peers
  replicas: 3
  podManagementPolicy: Parallel
  persistentVolumeClaimRetentionPolicy:
    whenScaled: Delete
    whenDeleted: Delete
  selector:
    matchLabels:
      app.kubernetes.io/name: store
  template:
    metadata:
      labels:
        app.kubernetes.io/name: store
    spec:
      serviceAccountName: store
      terminationGracePeriodSeconds: 30
      containers:
        - name: etcd
          image: quay.io/coreos/etcd:v3.5.16
{container}
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
"#
    )
}

/// Restarts of every container of every pod, by pod.
fn restarts(plane: &ControlPlane, ns: &str) -> BTreeMap<String, i64> {
    let Some(list) = get(plane, ns, "pods") else {
        return BTreeMap::new();
    };
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|pod| {
            let status = &pod["status"];
            let count: i64 = ["containerStatuses", "initContainerStatuses"]
                .iter()
                .flat_map(|key| status[key].as_array().into_iter().flatten())
                .filter_map(|c| c["restartCount"].as_i64())
                .sum();
            (
                pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                count,
            )
        })
        .collect()
}

/// Deletes `pod` and checks that it comes back as the same member: every member ID kept,
/// every pod Ready and no container restarting for 30 s after, `key` readable through it.
fn delete_pod_keeps_its_member(plane: &ControlPlane, ns: &str, pod: &str, all: &[&str], key: &str) {
    let before = wait_members(plane, ns, all, all);
    let old_uid = pod_uid(plane, ns, pod);
    let (ok, _, stderr) = run(
        plane,
        &["delete", "pod", "-n", ns, pod, "--wait=false"],
        None,
    );
    assert!(ok, "{stderr}");
    wait_replaced(plane, ns, pod, &old_uid);
    wait_ready(plane, ns, all);
    let after = wait_members(plane, ns, all, all);
    assert_eq!(
        after,
        before,
        "deleting {pod} changed a member\n{}",
        report(plane, ns)
    );
    let counted = restarts(plane, ns);
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(30) {
        let ready = ready_pods(plane, ns);
        assert_eq!(
            ready,
            all,
            "a pod stopped being Ready after {pod} came back\n{}",
            report(plane, ns)
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    assert_eq!(
        restarts(plane, ns),
        counted,
        "a container restarted in the 30 s after {pod} came back\n{}",
        report(plane, ns)
    );
    assert_eq!(
        read_key(plane, ns, pod, key).as_deref(),
        Some("kept"),
        "{key} through {pod}\n{}",
        report(plane, ns)
    );
    // The join decided so itself: data found where etcd keeps it, still a member.
    let resumed = wait_event(plane, ns, "MemberResumed", pod);
    assert!(resumed.contains("resumes"), "{resumed}");
}

#[test]
fn etcd_data_dir_from_env_from_keeps_a_bootstrap_member_through_a_pod_deletion() {
    let plane = installed();
    let ns = namespace(plane, "envfrom", true);
    let manifest = reshaped_etcd(
        r#"          command: ["etcd"]
          envFrom:
            - configMapRef:
                name: store-env"#,
    );
    let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    assert!(ok, "{stderr}");
    let all = ["store-0", "store-1", "store-2"];
    wait_ready(plane, &ns, &all);
    let sts = get(plane, &ns, "statefulset/store").unwrap();
    let join = &sts["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "raft-injector-join")
        .cloned()
        .unwrap();
    assert_eq!(
        join["envFrom"][0]["configMapRef"]["name"], "store-env",
        "{join:#}"
    );
    put(plane, &ns, "store-0", "/envfrom/before", "kept");
    delete_pod_keeps_its_member(plane, &ns, "store-1", &all, "/envfrom/before");
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}

#[test]
fn etcd_data_dir_from_a_configmap_variable_keeps_a_scaled_up_member_through_a_pod_deletion() {
    let plane = installed();
    let ns = namespace(plane, "datavar", true);
    let manifest = reshaped_etcd(
        r#"          command: ["etcd", "--data-dir", "$(DATA_DIR)"]
          env:
            - name: DATA_DIR
              valueFrom:
                configMapKeyRef:
                  name: store-env
                  key: dir"#,
    );
    let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    assert!(ok, "{stderr}");
    let three = ["store-0", "store-1", "store-2"];
    wait_ready(plane, &ns, &three);
    wait_members(plane, &ns, &three, &three);
    scale_statefulset(plane, &ns, "store", 5);
    let five = ["store-0", "store-1", "store-2", "store-3", "store-4"];
    wait_ready(plane, &ns, &five);
    wait_members(plane, &ns, &five, &five);
    put(plane, &ns, "store-0", "/datavar/before", "kept");
    delete_pod_keeps_its_member(plane, &ns, "store-3", &five, "/datavar/before");
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}
