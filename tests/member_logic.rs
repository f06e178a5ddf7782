//! The pure parts of the in-pod helper: the leave decision, reading the injected env, the
//! generic leave URL, and the etcd gateway's JSON.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use raft_injector::member::etcd::{host_of, quorum, Member};
use raft_injector::member::generic::HookUrl;
use raft_injector::member::leave::{decide, Decision};
use raft_injector::member::{MemberEnv, MemberError};
use raft_injector::policy::ordinals::Members;

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
    let three = Members {
        start: 0,
        replicas: 3,
    };
    assert_eq!(
        decide(4, Ok(Some(sts(3)))),
        Decision::Remove { members: three }
    );
    assert_eq!(
        decide(3, Ok(Some(sts(3)))),
        Decision::Remove { members: three }
    );
    assert!(matches!(decide(2, Ok(Some(sts(3)))), Decision::Keep(why) if why.contains("restart")));
}

#[test]
fn with_start_ordinals_the_highest_member_stays_on_a_restart() {
    let mut from_one = sts(3);
    if let Some(spec) = from_one.spec.as_mut() {
        spec.ordinals = Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(1) });
    }
    // Pods 1..3: pod 3 restarting keeps its membership; pod 4 (after 5 -> 3) leaves.
    assert!(matches!(
        decide(3, Ok(Some(from_one.clone()))),
        Decision::Keep(why) if why.contains("ordinal 3 is below spec.ordinals.start 1 + spec.replicas 3 = 4")
    ));
    assert_eq!(
        decide(4, Ok(Some(from_one))),
        Decision::Remove {
            members: Members {
                start: 1,
                replicas: 3
            }
        }
    );
}

#[test]
fn the_bootstrap_set_starts_at_the_first_peers_ordinal() {
    let peers = "etcd-1.etcd.prod.svc.cluster.local:2380,etcd-2.etcd.prod.svc.cluster.local:2380,etcd-3.etcd.prod.svc.cluster.local:2380";
    for (ordinal, bootstrap) in [(1, true), (3, true), (4, false), (0, false)] {
        let ordinal_text = ordinal.to_string();
        let pod = format!("etcd-{ordinal}");
        let env = pod_env(&[
            ("RAFT_PEERS", peers),
            ("RAFT_ORDINAL", &ordinal_text),
            ("POD_NAME", &pod),
        ]);
        let member = MemberEnv::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(member.ordinal_start, 1);
        assert_eq!(member.is_bootstrap_member(), bootstrap, "ordinal {ordinal}");
    }
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

fn etcd_env(extra: &[(&str, &str)]) -> raft_injector::member::EtcdEnv {
    let mut vars = vec![
        (
            "ETCD_ADVERTISE_CLIENT_URLS",
            "http://etcd-1.etcd.prod.svc.cluster.local:2379",
        ),
        (
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            "http://etcd-1.etcd.prod.svc.cluster.local:2380",
        ),
    ];
    vars.extend_from_slice(extra);
    let env = pod_env(&vars);
    MemberEnv::from_lookup(|k| env.get(k).cloned())
        .expect("complete env")
        .etcd
        .expect("etcd flavor")
}

#[test]
fn data_is_looked_for_where_the_injector_says_etcd_keeps_it() {
    use raft_injector::member::DataState;
    let volume = tempfile::tempdir().unwrap();
    let data = volume.path().join("default.etcd");
    let data_text = data.display().to_string();
    const READ: (&str, &str) = ("RAFT_DATA_FROM", "flags-then-env");
    // RAFT_DATA_DIR (etcd's --data-dir, read at admission) wins over ETCD_DATA_DIR.
    let etcd = etcd_env(&[
        READ,
        ("RAFT_DATA_DIR", &data_text),
        ("ETCD_DATA_DIR", "/somewhere/else"),
    ]);
    assert_eq!(etcd.data_dir, data);
    assert_eq!(etcd.data_state(), DataState::Absent, "certain, and empty");
    std::fs::create_dir_all(data.join("member/snap")).unwrap();
    std::fs::write(data.join("member/snap/db"), b"x").unwrap();
    assert_eq!(
        etcd.data_state(),
        DataState::Present(data.join("member/snap"))
    );

    // No flag: etcd's own env (here as envFrom or the image would give it) says, and so
    // does it for the helper, which shares it.
    let etcd = etcd_env(&[READ, ("ETCD_DATA_DIR", &data_text)]);
    assert_eq!(etcd.data_dir, data);
    assert_eq!(etcd.data_dir_unsure, None);
    // Neither: `<name>.etcd`, after the --name flag over ETCD_NAME.
    let etcd = etcd_env(&[READ, ("ETCD_NAME", "env-name")]);
    assert_eq!(etcd.data_dir, std::path::PathBuf::from("env-name.etcd"));
    let etcd = etcd_env(&[READ, ("ETCD_NAME", "env-name"), ("RAFT_ETCD_NAME", "flag")]);
    assert_eq!(etcd.data_dir, std::path::PathBuf::from("flag.etcd"));

    // A separate WAL directory counts as data on its own, from the flag or etcd's env.
    let wal = volume.path().join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    std::fs::write(wal.join("0000000000000000-0000000000000000.wal"), b"x").unwrap();
    let wal_text = wal.display().to_string();
    let empty = volume.path().join("empty").display().to_string();
    for wal_var in ["RAFT_WAL_DIR", "ETCD_WAL_DIR"] {
        let etcd = etcd_env(&[READ, ("RAFT_DATA_DIR", &empty), (wal_var, &wal_text)]);
        assert_eq!(
            etcd.data_state(),
            DataState::Present(wal.clone()),
            "{wal_var}"
        );
    }
}

#[test]
fn what_etcd_would_read_differently_is_unsure() {
    use raft_injector::member::DataState;
    let missing = "/nonexistent/raft-injector-test";
    const READ: (&str, &str) = ("RAFT_DATA_FROM", "flags-then-env");
    let cases: [(&[(&str, &str)], &str); 4] = [
        // A config file in etcd's env (envFrom, the image) overrides everything.
        (
            &[
                READ,
                ("ETCD_DATA_DIR", missing),
                ("ETCD_CONFIG_FILE", "/etc/etcd.yml"),
            ],
            "config file /etc/etcd.yml",
        ),
        // --data-dir "$(DATA_DIR)" with DATA_DIR defined nowhere: kubelet leaves it as is.
        (&[READ, ("RAFT_DATA_DIR", "$(DATA_DIR)")], "did not expand"),
        // An older injection's reading, contradicted by the env etcd really gets.
        (
            &[
                ("RAFT_DATA_DIR", missing),
                ("ETCD_DATA_DIR", "/var/run/etcd"),
            ],
            "disagree",
        ),
        // No reading at all.
        (&[("ETCD_DATA_DIR", missing)], "RAFT_DATA_FROM is not set"),
    ];
    for (env, why) in cases {
        let etcd = etcd_env(env);
        assert!(
            matches!(etcd.data_state(), DataState::Unsure(ref text) if text.contains(why)),
            "{env:?}: {:?}",
            etcd.data_state()
        );
    }
}

#[test]
fn without_the_injectors_reading_no_data_is_never_certain() {
    use raft_injector::member::DataState;
    let etcd = etcd_env(&[("ETCD_DATA_DIR", "/nonexistent/raft-injector-test")]);
    assert!(
        matches!(etcd.data_state(), DataState::Unsure(why) if why.contains("RAFT_DATA_FROM is not set")),
        "{:?}",
        etcd.data_state()
    );
    // A user-set ETCD_NAME is the name the member publishes, and etcd's default data
    // directory follows it.
    let etcd = etcd_env(&[("ETCD_NAME", "member-b")]);
    assert_eq!(etcd.name, "member-b");
    assert_eq!(etcd.data_dir, std::path::PathBuf::from("member-b.etcd"));
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
    let leave = HookUrl::parse(
        "DELETE http://{peer}:8080/groups/members/{name}?ns={namespace}&ordinal={ordinal}",
    )
    .unwrap();
    assert_eq!(leave.method, reqwest::Method::DELETE);
    let urls = raft_injector::member::generic::urls(&leave, &member);
    assert_eq!(urls.len(), 3, "one per other bootstrap member");
    assert_eq!(
        urls[0],
        "http://etcd-0.etcd.prod.svc.cluster.local:8080/groups/members/etcd-4?ns=prod&ordinal=4"
    );
    let plain = HookUrl::parse("http://localhost:9000/leave?id={id}").unwrap();
    assert_eq!(plain.method, reqwest::Method::POST);
    assert_eq!(
        raft_injector::member::generic::urls(&plain, &member),
        ["http://localhost:9000/leave?id=etcd-4.etcd.prod.svc.cluster.local"]
    );
}

#[test]
fn hook_urls_that_cannot_work_are_refused_with_the_reason() {
    for (annotation, expected) in [
        ("", "is not an http:// or https:// URL"),
        ("{peer}:8080/join", "is not an http:// or https:// URL"),
        ("post http://{peer}/join", "\"post\" is not an HTTP method"),
        ("PUT ftp://{peer}/join", "is not an http:// or https:// URL"),
        (
            "http://{peer}:8080/join?id={pod}",
            "{pod} is not a placeholder",
        ),
        ("http://{peer}:8080/join?id={name", "without a closing }"),
        ("http://{peer}:port/join", "is not a URL"),
    ] {
        let error = HookUrl::parse(annotation).unwrap_err();
        assert!(error.contains(expected), "{annotation:?}: {error}");
    }
    let ok = HookUrl::parse("  PUT https://{peer}:8443/raft/members/{name}?address={address}  ")
        .unwrap();
    assert_eq!(ok.method, reqwest::Method::PUT);
    assert_eq!(
        ok.template,
        "https://{peer}:8443/raft/members/{name}?address={address}"
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
    // A member of the initial cluster is listed under its name before it ever starts; only
    // published client URLs say it has run (a bootstrap member starting late must not be
    // taken for one that lost its data).
    let json = r#"{"members":[{"ID":"7","name":"etcd-2","peerURLs":["http://etcd-2.x:2380"]}]}"#;
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let late: Vec<Member> = serde_json::from_value(value["members"].clone()).unwrap();
    assert!(!late[0].is_started());
    assert_eq!(
        host_of(&members[0].peer_urls[0]),
        "etcd-0.etcd.prod.svc.cluster.local"
    );
    assert_eq!((quorum(2), quorum(3), quorum(4), quorum(5)), (2, 2, 3, 3));
}

mod generic_hooks {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::{delete, post};
    use axum::{Json, Router};
    use raft_injector::member::generic::{add_generic, remove_generic, HookUrl};
    use raft_injector::member::MemberEnv;
    use raft_injector::member::Removal;

    /// Calls counted and request bodies seen by the fake endpoint.
    type Seen = (Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>);

    /// A Raft app's admin endpoint: answers `fail_first` times with 503, then `status`.
    async fn serve(
        status: StatusCode,
        fail_first: usize,
    ) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let state = (calls.clone(), bodies.clone());
        let app = Router::new()
            .route(
                "/members/{name}",
                delete(
                    move |State((calls, bodies)): State<Seen>,
                          Path(name): Path<String>,
                          Json(body): Json<serde_json::Value>| async move {
                        bodies.lock().unwrap().push(format!("{name} {body}"));
                        if calls.fetch_add(1, Ordering::SeqCst) < fail_first {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            status
                        }
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (
            format!("DELETE http://{addr}/members/{{name}}"),
            calls,
            bodies,
        )
    }

    fn member() -> MemberEnv {
        let env = super::pod_env(&[]);
        MemberEnv::from_lookup(|k| env.get(k).cloned()).unwrap()
    }

    #[tokio::test]
    async fn a_2xx_answer_means_removed_and_the_body_names_the_member() {
        let (url, calls, bodies) = serve(StatusCode::NO_CONTENT, 0).await;
        let removal = remove_generic(
            &member(),
            &HookUrl::parse(&url).unwrap(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(removal, Removal::Removed);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let body = bodies.lock().unwrap()[0].clone();
        assert!(body.starts_with("etcd-4 "), "{body}");
        assert!(
            body.contains(r#""id":"etcd-4.etcd.prod.svc.cluster.local""#)
                && body.contains(r#""ordinal":4"#),
            "{body}"
        );
    }

    #[tokio::test]
    async fn not_found_means_already_gone() {
        let (url, _, _) = serve(StatusCode::NOT_FOUND, 0).await;
        let removal = remove_generic(
            &member(),
            &HookUrl::parse(&url).unwrap(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(removal, Removal::AlreadyGone);
    }

    #[tokio::test]
    async fn errors_are_retried_until_the_deadline() {
        let (url, calls, _) = serve(StatusCode::OK, 2).await;
        let removal = remove_generic(
            &member(),
            &HookUrl::parse(&url).unwrap(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(removal, Removal::Removed);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "two refusals, then success"
        );

        let (url, _, _) = serve(StatusCode::OK, usize::MAX).await;
        let error = remove_generic(
            &member(),
            &HookUrl::parse(&url).unwrap(),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("503"), "{error}");
    }

    /// Two bootstrap peers on one port, at 127.0.0.2 and 127.0.0.3 (loopback answers on
    /// all of 127/8): the first refuses (not the leader, say), the second answers 503
    /// `fail_first` times, then accepts with 202.
    async fn serve_join(fail_first: usize) -> (u16, Arc<AtomicUsize>, Seen) {
        let refused = Arc::new(AtomicUsize::new(0));
        let seen: Seen = Default::default();
        let refuser = Router::new().route(
            "/raft/join",
            post({
                let refused = refused.clone();
                move || async move {
                    refused.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::CONFLICT, "not the leader")
                }
            }),
        );
        let acceptor = Router::new()
            .route(
                "/raft/join",
                post(
                    move |State((calls, bodies)): State<Seen>,
                          axum::extract::RawQuery(query): axum::extract::RawQuery,
                          Json(body): Json<serde_json::Value>| async move {
                        bodies
                            .lock()
                            .unwrap()
                            .push(format!("{} {body}", query.unwrap_or_default()));
                        if calls.fetch_add(1, Ordering::SeqCst) < fail_first {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            StatusCode::ACCEPTED
                        }
                    },
                ),
            )
            .with_state(seen.clone());
        let first = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let second = tokio::net::TcpListener::bind(("127.0.0.3", port))
            .await
            .unwrap();
        tokio::spawn(async move { axum::serve(first, refuser).await.unwrap() });
        tokio::spawn(async move { axum::serve(second, acceptor).await.unwrap() });
        (port, refused, seen)
    }

    fn joiner() -> MemberEnv {
        MemberEnv {
            peers: vec!["127.0.0.2:7000".to_owned(), "127.0.0.3:7000".to_owned()],
            bootstrap_size: 2,
            ..member()
        }
    }

    #[tokio::test]
    async fn join_tries_each_peer_until_one_accepts_and_retries_refusals() {
        let (port, refused, (calls, bodies)) = serve_join(1).await;
        let url = HookUrl::parse(&format!(
            "http://{{peer}}:{port}/raft/join?id={{name}}&address={{address}}"
        ))
        .unwrap();
        let (accepted_by, status) = add_generic(&joiner(), &url, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(status, 202);
        assert!(
            accepted_by.starts_with("http://127.0.0.3:"),
            "{accepted_by}"
        );
        assert_eq!(
            (refused.load(Ordering::SeqCst), calls.load(Ordering::SeqCst)),
            (2, 2),
            "each round asks the first peer, then the second: 503 in round one, 202 in round two"
        );
        let body = bodies.lock().unwrap()[1].clone();
        assert!(
            body.starts_with("id=etcd-4&address=etcd-4.etcd.prod.svc.cluster.local:2380 ")
                && body.contains(r#""ordinal":4"#),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_join_nobody_accepts_fails_at_the_deadline_naming_the_last_answer() {
        let (port, _, _) = serve_join(usize::MAX).await;
        let url = HookUrl::parse(&format!("http://{{peer}}:{port}/raft/join")).unwrap();
        let started = std::time::Instant::now();
        let error = add_generic(&joiner(), &url, Duration::from_secs(2))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert!(
            error.contains("gave up after 2s")
                && error.contains("the join URL")
                && error.contains("503"),
            "{error}"
        );
        // A 404 is no success for a join (only leave reads it as already gone).
        let missing = HookUrl::parse(&format!("http://127.0.0.2:{port}/no-such-path")).unwrap();
        let error = add_generic(&joiner(), &missing, Duration::from_secs(1))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("404"), "{error}");
    }
}
