//! The pure parts of the in-pod helper: the leave decision, reading the injected env, the
//! generic leave URL, and the etcd gateway's JSON.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use raft_injector::member::etcd::{host_of, quorum, Member};
use raft_injector::member::generic::LeaveUrl;
use raft_injector::member::leave::{decide, Decision};
use raft_injector::member::{MemberEnv, MemberError};

fn sts(replicas: i32) -> StatefulSet {
    StatefulSet {
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

#[test]
fn leave_removes_only_pods_at_or_beyond_replicas() {
    assert_eq!(
        decide(4, Ok(Some(sts(3)))),
        Decision::Remove { replicas: 3 }
    );
    assert_eq!(
        decide(3, Ok(Some(sts(3)))),
        Decision::Remove { replicas: 3 }
    );
    assert!(matches!(decide(2, Ok(Some(sts(3)))), Decision::Keep(why) if why.contains("restart")));
}

#[test]
fn leave_keeps_the_membership_whenever_unsure() {
    let keeps = |d: Decision, expected: &str| match d {
        Decision::Keep(why) => assert!(why.contains(expected), "{why}"),
        other => panic!("expected Keep, got {other:?}"),
    };
    keeps(
        decide(4, Err("connection refused".into())),
        "cannot read the StatefulSet (connection refused)",
    );
    keeps(decide(4, Ok(None)), "is gone");
    keeps(decide(4, Ok(Some(sts(0)))), "spec.replicas is 0");
    let mut deleting = sts(1);
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::chrono::DateTime::UNIX_EPOCH,
        ));
    keeps(decide(4, Ok(Some(deleting))), "being deleted");
}

fn pod_env(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = [
        ("POD_NAME", "etcd-4"),
        ("POD_NAMESPACE", "prod"),
        ("RAFT_ORDINAL", "4"),
        ("RAFT_ID", "etcd-4.etcd.prod.svc.cluster.local"),
        ("RAFT_ADDRESS", "etcd-4.etcd.prod.svc.cluster.local:2380"),
        ("RAFT_CLUSTER_SIZE", "3"),
        (
            "RAFT_PEERS",
            "etcd-0.etcd.prod.svc.cluster.local:2380,etcd-1.etcd.prod.svc.cluster.local:2380,etcd-2.etcd.prod.svc.cluster.local:2380",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

#[test]
fn member_env_reads_what_the_webhook_injects() {
    let env = pod_env(&[
        (
            "ETCD_ADVERTISE_CLIENT_URLS",
            "http://etcd-4.etcd.prod.svc.cluster.local:2379",
        ),
        (
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            "http://etcd-4.etcd.prod.svc.cluster.local:2380",
        ),
        ("ETCD_DATA_DIR", "/var/lib/etcd"),
    ]);
    let member = MemberEnv::from_lookup(|k| env.get(k).cloned()).expect("complete env");
    assert_eq!(member.statefulset, "etcd");
    assert_eq!(member.ordinal, 4);
    assert_eq!(member.bootstrap_size, 3);
    let etcd = member.etcd.as_ref().expect("etcd flavor");
    assert_eq!(etcd.client_port, "2379");
    assert_eq!(etcd.data_dir, std::path::PathBuf::from("/var/lib/etcd"));
    assert_eq!(
        member.other_peer_hosts(),
        [
            "etcd-0.etcd.prod.svc.cluster.local",
            "etcd-1.etcd.prod.svc.cluster.local",
            "etcd-2.etcd.prod.svc.cluster.local"
        ]
    );
}

#[test]
fn member_env_says_which_variable_is_missing() {
    let mut env = pod_env(&[]);
    env.remove("POD_NAMESPACE");
    let error = MemberEnv::from_lookup(|k| env.get(k).cloned()).unwrap_err();
    assert!(
        matches!(error, MemberError::MissingEnv("POD_NAMESPACE")),
        "{error}"
    );
    let env = pod_env(&[("RAFT_ORDINAL", "four")]);
    let error = MemberEnv::from_lookup(|k| env.get(k).cloned()).unwrap_err();
    assert!(
        error.to_string().contains("RAFT_ORDINAL is \"four\""),
        "{error}"
    );
}

#[test]
fn leave_url_placeholders_and_method() {
    let env = pod_env(&[]);
    let member = MemberEnv::from_lookup(|k| env.get(k).cloned()).unwrap();
    let leave = LeaveUrl::parse(
        "DELETE http://{peer}:8080/groups/members/{name}?ns={namespace}&ordinal={ordinal}",
    );
    assert_eq!(leave.method, reqwest::Method::DELETE);
    let urls = leave.urls(&member);
    assert_eq!(urls.len(), 3, "one per other bootstrap member");
    assert_eq!(
        urls[0],
        "http://etcd-0.etcd.prod.svc.cluster.local:8080/groups/members/etcd-4?ns=prod&ordinal=4"
    );
    let plain = LeaveUrl::parse("http://localhost:9000/leave?id={id}");
    assert_eq!(plain.method, reqwest::Method::POST);
    assert_eq!(
        plain.urls(&member),
        ["http://localhost:9000/leave?id=etcd-4.etcd.prod.svc.cluster.local"]
    );
}

#[test]
fn gateway_ids_are_strings_and_unstarted_members_have_no_name() {
    let json = r#"{"members":[{"ID":"10501334649042878790","name":"etcd-0","peerURLs":["http://etcd-0.etcd.prod.svc.cluster.local:2380"],"clientURLs":["http://etcd-0.etcd.prod.svc.cluster.local:2379"]},{"ID":"3","peerURLs":["http://etcd-3.x:2380"],"isLearner":true}]}"#;
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let members: Vec<Member> = serde_json::from_value(value["members"].clone()).unwrap();
    assert_eq!(members[0].id, 10501334649042878790);
    assert!(members[0].is_started());
    assert!(!members[1].is_started() && members[1].is_learner);
    assert_eq!(
        host_of(&members[0].peer_urls[0]),
        "etcd-0.etcd.prod.svc.cluster.local"
    );
    assert_eq!((quorum(2), quorum(3), quorum(4), quorum(5)), (2, 2, 3, 3));
}
