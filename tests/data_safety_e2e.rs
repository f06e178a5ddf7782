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
//! And a volume lost while the cluster was stopped: 3 formed with `whenScaled: Retain`,
//! scaled to 0, member 0's PVC deleted, 1 replica for a minute, then 3. The record that the
//! cluster formed keeps member 0 from starting a new cluster under its old member ID; once
//! members 1 and 2 are back it is replaced as a new member and serves the old keys.
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

/// `etcdctl member list` through `pod`: (name, id, learner) of every member.
fn member_roles(plane: &ControlPlane, ns: &str, pod: &str) -> Vec<(String, String, bool)> {
    let out = exec(
        plane,
        ns,
        pod,
        &["etcdctl", "member", "list", "-w", "json", "--hex"],
    )
    .unwrap_or_default();
    let list: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    list["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_owned(),
                m["ID"].as_str().unwrap_or_default().to_owned(),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[test]
fn a_volume_lost_while_the_cluster_was_stopped_comes_back_as_a_new_member() {
    let plane = installed();
    let ns = namespace(plane, "lostvol", true);
    let manifest = reshaped_etcd(
        r#"          command: ["etcd"]
          envFrom:
            - configMapRef:
                name: store-env"#,
    )
    .replace("whenScaled: Delete", "whenScaled: Retain");
    let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    assert!(ok, "{stderr}");
    let three = ["store-0", "store-1", "store-2"];
    wait_ready(plane, &ns, &three);
    let before = wait_members(plane, &ns, &three, &three);
    put(plane, &ns, "store-1", "/lost/before", "kept");
    // The sidecar next to a member records that the cluster formed.
    let record = wait(plane, &ns, 60, "no record that the cluster formed", || {
        get(plane, &ns, "configmap/store-raft-formed")
    });
    let sts = get(plane, &ns, "statefulset/store").unwrap();
    assert_eq!(
        record["metadata"]["ownerReferences"][0]["uid"], sts["metadata"]["uid"],
        "{record:#}"
    );
    let formed = wait(plane, &ns, 60, "no ClusterFormed Event", || {
        helper_events(plane, &ns)
            .into_iter()
            .find(|(reason, _)| reason == "ClusterFormed")
    });
    assert!(formed.1.contains("store-raft-formed"), "{formed:?}");

    // Stopped as a whole, member 0's volume lost, started with one replica for a minute.
    scale_statefulset(plane, &ns, "store", 0);
    wait_gone(plane, &ns, &three);
    let (ok, _, stderr) = run(
        plane,
        &[
            "delete",
            "pvc",
            "-n",
            &ns,
            "datadir-store-0",
            "--timeout=90s",
        ],
        None,
    );
    assert!(ok, "{stderr}");
    scale_statefulset(plane, &ns, "store", 1);
    let waiting = wait_event(plane, &ns, "MemberVolumeLost", "store-0");
    assert!(
        waiting.contains("store-raft-formed") && waiting.contains("waiting for a quorum"),
        "{waiting}"
    );
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(60) {
        let pod = get(plane, &ns, "pod/store-0").unwrap_or_default();
        let etcd_started = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == "etcd" && !c["state"]["waiting"].is_object());
        assert!(
            !etcd_started,
            "etcd started on an empty volume while the cluster was down\n{}",
            report(plane, &ns)
        );
        std::thread::sleep(Duration::from_secs(5));
    }

    // Back to 3: members 1 and 2 resume from their data, and member 0 is replaced.
    scale_statefulset(plane, &ns, "store", 3);
    wait_ready(plane, &ns, &three);
    let after = wait_members(plane, &ns, &three, &three);
    assert_ne!(
        after["store-0"],
        before["store-0"],
        "store-0 came back under its old member ID with an empty log\n{}",
        report(plane, &ns)
    );
    for kept in ["store-1", "store-2"] {
        assert_eq!(after[kept], before[kept], "{kept} kept its member ID");
    }
    let roles = member_roles(plane, &ns, "store-0");
    assert!(
        roles.len() == 3 && roles.iter().all(|(_, _, learner)| !learner),
        "3 voting members: {roles:?}"
    );
    assert_eq!(
        read_key(plane, &ns, "store-0", "/lost/before").as_deref(),
        Some("kept"),
        "the key written before the stop, through store-0\n{}",
        report(plane, &ns)
    );
    let joined = wait_event(plane, &ns, "MemberJoined", "store-0");
    assert!(joined.contains("without data"), "{joined}");
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}
