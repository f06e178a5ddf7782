//! Injection (SPEC §4): golden output, idempotency, the frozen bootstrap size, target and
//! port resolution, and user values never overwritten.

mod common;

use common::{apply, services, settings, statefulset};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{EnvVar, PodSpec, Service};
use raft_injector::policy::{mutate, Context, Patch, Settings};
use serde_json::{json, Value};

fn mutate_with(
    sts: &StatefulSet,
    svc: Option<&Service>,
    old: Option<&StatefulSet>,
    settings: &Settings,
) -> Patch {
    mutate(
        sts,
        &Context {
            namespace: "default",
            service: svc,
            old,
            settings,
            dry_run: false,
        },
    )
    .expect("resolvable")
}

/// The pod template's spec, to change a test's StatefulSet.
fn pod_mut(sts: &mut StatefulSet) -> &mut PodSpec {
    sts.spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("the example has a pod template")
}

/// `sts` with `patch` applied, as the API server would store it.
fn patched(sts: &StatefulSet, patch: &Patch) -> StatefulSet {
    let value = apply(&serde_json::to_value(sts).unwrap(), patch);
    serde_json::from_value(value).expect("the patched object is a StatefulSet")
}

/// Injects `sts` and returns the injected object.
fn injected(sts: &StatefulSet, svc: Option<&Service>) -> StatefulSet {
    patched(sts, &mutate_with(sts, svc, None, &settings()))
}

fn etcd() -> (StatefulSet, Service) {
    (
        statefulset("examples/etcd.yaml"),
        services("examples/etcd.yaml").remove(0),
    )
}

fn ratis() -> (StatefulSet, Service) {
    (
        statefulset("examples/ratis-app.yaml"),
        services("examples/ratis-app.yaml").remove(0),
    )
}

fn env_of(sts: &StatefulSet, container: usize) -> Vec<EnvVar> {
    sts.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[container]
        .env
        .clone()
        .unwrap_or_default()
}

fn value_of(sts: &StatefulSet, container: usize, name: &str) -> Option<String> {
    env_of(sts, container)
        .into_iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value)
}

fn template(sts: &StatefulSet) -> Value {
    serde_json::to_value(&sts.spec.as_ref().unwrap().template).unwrap()
}

#[test]
fn golden_output_for_each_example() {
    for example in ["etcd", "ratis-app", "kafka"] {
        let input = common::read(&format!("examples/{example}.yaml"));
        let report = common::inject_text(example, &input);
        assert!(report.denials.is_empty(), "{:?}", report.denials);
        let golden = common::root().join(format!("tests/golden/{example}.yaml"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &report.output).unwrap();
        }
        let expected = std::fs::read_to_string(&golden)
            .expect("golden file exists (UPDATE_GOLDEN=1 writes it)");
        assert_eq!(
            report.output,
            expected,
            "{example}: injected output differs from {}",
            golden.display()
        );
    }
}

#[test]
fn same_input_gives_byte_identical_output() {
    let input = common::read("examples/etcd.yaml");
    let run = || common::inject_text("etcd", &input).output;
    assert_eq!(run(), run());
}

#[test]
fn documents_that_are_not_raft_statefulsets_are_printed_unchanged() {
    let input = common::read("examples/etcd.yaml");
    let report = common::inject_text("etcd", &input);
    // The comments of the Service document survive byte for byte.
    assert!(report.output.contains("  # Members must resolve each other before they are Ready, or a new cluster never forms.\n"));
}

#[test]
fn already_injected_object_gets_an_empty_patch() {
    for (sts, svc) in [etcd(), ratis()] {
        let once = injected(&sts, Some(&svc));
        let again = mutate_with(&once, Some(&svc), None, &settings());
        assert!(again.0.is_empty(), "second admission patched: {again:?}");
        let again_as_update = mutate_with(&once, Some(&svc), Some(&once), &settings());
        assert!(again_as_update.0.is_empty());
    }
}

#[test]
fn replicas_change_does_not_touch_template() {
    let (sts, svc) = etcd();
    let stored = injected(&sts, Some(&svc));
    let mut scaled = stored.clone();
    scaled.spec.as_mut().unwrap().replicas = Some(5);
    let patch = mutate_with(&scaled, Some(&svc), Some(&stored), &settings());
    assert!(patch.0.is_empty(), "{patch:?}");
    assert_eq!(
        value_of(&stored, 0, "RAFT_CLUSTER_SIZE").as_deref(),
        Some("3")
    );
}

#[test]
fn bootstrap_size_survives_a_server_side_apply_that_drops_the_status() {
    // A server-side apply re-sends the user's manifest: no status, no injected env, new replicas.
    let (sts, svc) = etcd();
    let stored = injected(&sts, Some(&svc));
    let mut reapplied = sts.clone();
    reapplied.spec.as_mut().unwrap().replicas = Some(5);
    let patch = mutate_with(&reapplied, Some(&svc), Some(&stored), &settings());
    let result: StatefulSet = patched(&reapplied, &patch);
    assert_eq!(
        template(&result),
        template(&stored),
        "template must not change"
    );
    assert_eq!(
        value_of(&result, 0, "RAFT_CLUSTER_SIZE").as_deref(),
        Some("3")
    );
}

#[test]
fn generic_env_vars_have_the_spec_values() {
    let (sts, svc) = ratis();
    let out = injected(&sts, Some(&svc));
    let expect = [
        ("RAFT_SERVICE", "counter"),
        ("RAFT_PORT", "9872"),
        ("RAFT_CLUSTER_DOMAIN", "cluster.local"),
        ("RAFT_ID", "$(POD_NAME).counter.default.svc.cluster.local"),
        ("RAFT_ADDRESS", "$(RAFT_ID):9872"),
        ("RAFT_PEER_PATTERN", "counter-%d.counter.default.svc.cluster.local:9872"),
        (
            "RAFT_PEERS",
            "counter-0.counter.default.svc.cluster.local:9872,counter-1.counter.default.svc.cluster.local:9872,counter-2.counter.default.svc.cluster.local:9872",
        ),
        ("RAFT_CLUSTER_SIZE", "3"),
        ("RAFT_GROUP_ID", &raft_injector::policy::resolve::default_group_id("default", "counter")),
    ];
    for (name, value) in expect {
        assert_eq!(value_of(&out, 0, name).as_deref(), Some(value), "{name}");
    }
    let downward: Vec<(String, String)> = env_of(&out, 0)
        .into_iter()
        .filter_map(|e| Some((e.name, e.value_from?.field_ref?.field_path)))
        .collect();
    assert_eq!(
        downward,
        [
            ("POD_NAME".to_owned(), "metadata.name".to_owned()),
            ("POD_NAMESPACE".to_owned(), "metadata.namespace".to_owned()),
            (
                "RAFT_ORDINAL".to_owned(),
                "metadata.labels['apps.kubernetes.io/pod-index']".to_owned()
            ),
        ]
    );
    // $(VAR) only expands for vars defined earlier in the list.
    let names: Vec<String> = env_of(&out, 0).into_iter().map(|e| e.name).collect();
    let position = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(
        position("POD_NAME") < position("RAFT_ID")
            && position("RAFT_ID") < position("RAFT_ADDRESS")
    );
}

#[test]
fn group_id_is_a_stable_uuid_v5_unless_annotated() {
    let id = raft_injector::policy::resolve::default_group_id("default", "counter");
    assert_eq!(
        id,
        raft_injector::policy::resolve::default_group_id("default", "counter")
    );
    assert_ne!(
        id,
        raft_injector::policy::resolve::default_group_id("prod", "counter")
    );
    let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 5);
    // A UUIDv5 of "<namespace>/<name>" (SPEC), in the UUIDv5 of "raft-injector.io" (DNS).
    let namespace = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_DNS, b"raft-injector.io");
    assert_eq!(
        id,
        uuid::Uuid::new_v5(&namespace, b"default/counter").to_string()
    );

    let (mut sts, svc) = ratis();
    sts.metadata.annotations = Some(
        [(
            "raft-injector.io/group-id".to_owned(),
            "counter-group".to_owned(),
        )]
        .into(),
    );
    assert_eq!(
        value_of(&injected(&sts, Some(&svc)), 0, "RAFT_GROUP_ID").as_deref(),
        Some("counter-group")
    );
}

#[test]
fn cluster_domain_comes_from_annotation_then_flag() {
    let (mut sts, svc) = ratis();
    let settings = Settings {
        cluster_domain: "corp.internal".to_owned(),
        ..settings()
    };
    let with_flag: StatefulSet = patched(&sts, &mutate_with(&sts, Some(&svc), None, &settings));
    assert_eq!(
        value_of(&with_flag, 0, "RAFT_CLUSTER_DOMAIN").as_deref(),
        Some("corp.internal")
    );

    sts.metadata.annotations = Some(
        [(
            "raft-injector.io/cluster-domain".to_owned(),
            "edge.local".to_owned(),
        )]
        .into(),
    );
    let out = injected(&sts, Some(&svc));
    assert_eq!(
        value_of(&out, 0, "RAFT_ID").as_deref(),
        Some("$(POD_NAME).counter.default.svc.edge.local")
    );
}

#[test]
fn etcd_flavor_sets_the_etcd_configuration() {
    let (mut sts, svc) = etcd();
    sts.metadata.annotations.as_mut().unwrap().insert(
        "raft-injector.io/client-port".to_owned(),
        "12379".to_owned(),
    );
    let out = injected(&sts, Some(&svc));
    let host = |i: u8| format!("etcd-{i}.etcd.default.svc.cluster.local");
    for (name, value) in [
        ("ETCD_NAME", "$(POD_NAME)".to_owned()),
        (
            "ETCD_INITIAL_CLUSTER",
            format!(
                "etcd-0=http://{}:2380,etcd-1=http://{}:2380,etcd-2=http://{}:2380",
                host(0),
                host(1),
                host(2)
            ),
        ),
        ("ETCD_INITIAL_CLUSTER_TOKEN", "default-etcd".to_owned()),
        ("ETCD_INITIAL_CLUSTER_STATE", "new".to_owned()),
        (
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            "http://$(RAFT_ID):2380".to_owned(),
        ),
        ("ETCD_LISTEN_PEER_URLS", "http://0.0.0.0:2380".to_owned()),
        ("ETCD_LISTEN_CLIENT_URLS", "http://0.0.0.0:12379".to_owned()),
        (
            "ETCD_ADVERTISE_CLIENT_URLS",
            "http://$(RAFT_ID):12379".to_owned(),
        ),
        ("RAFT_PORT", "2380".to_owned()),
    ] {
        assert_eq!(value_of(&out, 0, name), Some(value), "{name}");
    }
    // The user's own etcd setting stays first and untouched.
    assert_eq!(env_of(&out, 0)[0].name, "ETCD_DATA_DIR");
}

#[test]
fn the_join_container_sees_etcds_whole_environment_and_only_its_flags_are_read() {
    use k8s_openapi::api::core::v1::{ConfigMapEnvSource, EnvFromSource};
    let (mut sts, svc) = etcd();
    let from = vec![EnvFromSource {
        config_map_ref: Some(ConfigMapEnvSource {
            name: "kv-env".to_owned(),
            optional: None,
        }),
        ..EnvFromSource::default()
    }];
    let target = &mut pod_mut(&mut sts).containers[0];
    target.env = None;
    target.env_from = Some(from.clone());
    target.command = Some(vec!["etcd".to_owned(), "--name=$(HOSTNAME)".to_owned()]);
    let out = injected(&sts, Some(&svc));
    let join = init_container(&out, "raft-injector-join");
    assert_eq!(
        join.env_from.as_ref(),
        Some(&from),
        "ETCD_DATA_DIR may be in there"
    );
    let tail: Vec<_> = join
        .env
        .iter()
        .flatten()
        .rev()
        .take(2)
        .map(|v| (v.name.as_str(), v.value.as_deref().unwrap_or_default()))
        .collect();
    assert_eq!(
        tail,
        [
            ("RAFT_ETCD_NAME", "$(HOSTNAME)"),
            ("RAFT_DATA_FROM", "flags-then-env")
        ],
        "no RAFT_DATA_DIR: etcd's command line has no --data-dir"
    );
    let sidecar = init_container(&out, "raft-injector-reconcile");
    assert_eq!(sidecar.env_from, None, "the sidecar runs the helper image");

    // etcd behind a shell: nothing is read, so the helper is never sure.
    pod_mut(&mut sts).containers[0].command =
        Some(["sh", "-c", "exec etcd"].map(str::to_owned).to_vec());
    let out = injected(&sts, Some(&svc));
    let join = init_container(&out, "raft-injector-join");
    assert!(
        !join
            .env
            .iter()
            .flatten()
            .any(|v| v.name.starts_with("RAFT_DATA")),
        "{:?}",
        join.env
    );
}

#[test]
fn injected_containers_run_the_runtime_seccomp_profile_and_the_join_never_inherits_privilege() {
    use k8s_openapi::api::core::v1::{Capabilities, SeccompProfile, SecurityContext};
    let (mut sts, svc) = etcd();
    pod_mut(&mut sts).containers[0].security_context = Some(SecurityContext {
        privileged: Some(true),
        run_as_user: Some(1001),
        capabilities: Some(Capabilities {
            add: Some(vec!["SYS_ADMIN".to_owned()]),
            drop: Some(vec!["NET_RAW".to_owned()]),
        }),
        ..SecurityContext::default()
    });
    let out = injected(&sts, Some(&svc));
    for name in [
        "raft-injector",
        "raft-injector-join",
        "raft-injector-reconcile",
    ] {
        let context = init_container(&out, name).security_context.clone().unwrap();
        assert_eq!(
            context.seccomp_profile.map(|p| p.type_).as_deref(),
            Some("RuntimeDefault"),
            "{name}"
        );
        assert_eq!(context.allow_privilege_escalation, Some(false), "{name}");
    }
    let join = init_container(&out, "raft-injector-join")
        .security_context
        .clone()
        .unwrap();
    assert_eq!(join.privileged, None);
    assert_eq!(
        join.run_as_user,
        Some(1001),
        "the join writes the volume as etcd does"
    );
    let capabilities = join.capabilities.unwrap();
    assert_eq!(
        (capabilities.add, capabilities.drop),
        (None, Some(vec!["NET_RAW".to_owned()]))
    );

    // A profile of the user's own is kept.
    let own = SeccompProfile {
        type_: "Localhost".to_owned(),
        localhost_profile: Some("profiles/etcd.json".to_owned()),
    };
    pod_mut(&mut sts).containers[0].security_context = Some(SecurityContext {
        seccomp_profile: Some(own.clone()),
        ..SecurityContext::default()
    });
    let out = injected(&sts, Some(&svc));
    let join = init_container(&out, "raft-injector-join")
        .security_context
        .clone()
        .unwrap();
    assert_eq!(join.seccomp_profile, Some(own));
}

fn kafka() -> (StatefulSet, Service) {
    (
        statefulset("examples/kafka.yaml"),
        services("examples/kafka.yaml").remove(0),
    )
}

fn init_container<'a>(
    sts: &'a StatefulSet,
    name: &str,
) -> &'a k8s_openapi::api::core::v1::Container {
    sts.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("init container {name}"))
}

#[test]
fn kraft_flavor_configures_a_dynamic_quorum_of_controllers() {
    // Other names, a start ordinal, a node id offset, the user's own cluster id and log dir.
    let (mut sts, mut svc) = kafka();
    sts.metadata.name = Some("quorum".into());
    sts.spec.as_mut().unwrap().service_name = Some("kq".into());
    svc.metadata.name = Some("kq".into());
    sts.spec.as_mut().unwrap().ordinals =
        Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(1) });
    common::annotate(&mut sts, "raft-injector.io/node-id-offset", "3000");
    common::annotate(&mut sts, "raft-injector.io/port", "19093");
    let container = common::first_container(&mut sts);
    container.env.get_or_insert_with(Vec::new).extend([
        EnvVar {
            name: "CLUSTER_ID".into(),
            value: Some("MkU3OEVBNTcwNTJENDM2Qk".into()),
            value_from: None,
        },
        EnvVar {
            name: "KAFKA_LOG_DIRS".into(),
            value: Some("/var/lib/kafka/data/kraft".into()),
            value_from: None,
        },
    ]);
    let verdict = common::check(&sts, Some(&svc), None);
    assert!(verdict.is_allowed(), "{verdict:?}");
    assert!(
        verdict
            .warnings
            .iter()
            .any(|w| w.contains("sets env CLUSTER_ID itself")),
        "{:?}",
        verdict.warnings
    );
    // Plaintext is said on create, on the port in use, and not on later applies.
    let plaintext = |v: &raft_injector::policy::Verdict| {
        v.warnings
            .iter()
            .filter(|w| w.contains("PLAINTEXT") && w.contains("port 19093"))
            .count()
    };
    assert_eq!(plaintext(&verdict), 1, "{:?}", verdict.warnings);
    assert_eq!(plaintext(&common::check(&sts, Some(&svc), Some(&sts))), 0);
    let out = injected(&sts, Some(&svc));
    let host = |i: u8| format!("quorum-{i}.kq.default.svc.cluster.local:19093");
    for (name, value) in [
        ("KAFKA_PROCESS_ROLES", "controller".to_owned()),
        ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER".to_owned()),
        ("KAFKA_LISTENERS", "CONTROLLER://0.0.0.0:19093".to_owned()),
        (
            "KAFKA_ADVERTISED_LISTENERS",
            "CONTROLLER://$(RAFT_ID):19093".to_owned(),
        ),
        (
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "CONTROLLER:PLAINTEXT".to_owned(),
        ),
        (
            "KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS",
            format!("{},{},{}", host(1), host(2), host(3)),
        ),
        ("RAFT_KRAFT_NODE_ID_OFFSET", "3000".to_owned()),
        // The user's own win.
        ("CLUSTER_ID", "MkU3OEVBNTcwNTJENDM2Qk".to_owned()),
        ("KAFKA_LOG_DIRS", "/var/lib/kafka/data/kraft".to_owned()),
    ] {
        assert_eq!(value_of(&out, 0, name), Some(value), "{name}");
    }
    let names: Vec<String> = env_of(&out, 0).into_iter().map(|e| e.name).collect();
    assert_eq!(names.iter().filter(|n| *n == "CLUSTER_ID").count(), 1);
    assert!(!names.contains(&"KAFKA_CONTROLLER_QUORUM_VOTERS".to_owned()));
    // Started through the exec wrapper with the image's own command; the join container runs
    // in the Kafka image (it formats with kafka-storage.sh); the sidecar reads the helper
    // volume, where the join container leaves the directory id.
    let pod = out.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        pod.containers[0].command.as_deref().unwrap(),
        [
            "/raft-injector/raft-injector",
            "member",
            "exec",
            "--",
            "/etc/kafka/docker/run"
        ]
    );
    let join = init_container(&out, "raft-injector-join");
    assert_eq!(join.image.as_deref(), Some("docker.io/apache/kafka:4.4.0"));
    assert!(join
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path == "/var/lib/kafka/data"));
    let sidecar = init_container(&out, "raft-injector-reconcile");
    assert!(sidecar
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path == "/raft-injector" && m.read_only == Some(true)));
}

#[test]
fn kraft_flavor_warns_about_what_defeats_a_dynamic_quorum() {
    let (mut sts, svc) = kafka();
    sts.spec.as_mut().unwrap().pod_management_policy = None;
    let container = common::first_container(&mut sts);
    container.volume_mounts = None;
    container.env.get_or_insert_with(Vec::new).extend([
        EnvVar {
            name: "KAFKA_CONTROLLER_QUORUM_VOTERS".into(),
            value: Some("0@a:9093".into()),
            value_from: None,
        },
        EnvVar {
            name: "KAFKA_CONTROLLER_QUORUM_AUTO_JOIN_ENABLE".into(),
            value: Some("true".into()),
            value_from: None,
        },
    ]);
    let verdict = common::check(&sts, Some(&svc), None);
    let all = verdict.warnings.join("\n");
    for expected in [
        "KAFKA_CONTROLLER_QUORUM_VOTERS: that makes a static quorum",
        "KAFKA_CONTROLLER_QUORUM_AUTO_JOIN_ENABLE=true",
        "which no volumeMount holds",
        "podManagementPolicy is not Parallel",
    ] {
        assert!(
            all.contains(expected),
            "no warning with {expected:?}:\n{all}"
        );
    }
}

#[test]
fn the_kafka_example_gives_its_broker_the_controllers_cluster_id() {
    let (sts, _) = kafka();
    let group = sts.metadata.annotations.as_ref().unwrap()["raft-injector.io/group-id"].clone();
    let broker = common::yaml_docs("examples/kafka.yaml")
        .into_iter()
        .find(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "kafka-broker")
        .expect("the example has a broker");
    let cluster_id = broker["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "CLUSTER_ID")
        .and_then(|e| e["value"].as_str())
        .unwrap()
        .to_owned();
    assert_eq!(
        cluster_id,
        raft_injector::policy::flavor::kraft::cluster_id(&group)
    );
}

#[test]
fn start_ordinals_name_the_members_that_exist() {
    let (mut sts, svc) = etcd();
    sts.spec.as_mut().unwrap().ordinals =
        Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(1) });
    let out = injected(&sts, Some(&svc));
    let host = |i: u8| format!("etcd-{i}.etcd.default.svc.cluster.local");
    assert_eq!(
        value_of(&out, 0, "RAFT_PEERS").unwrap(),
        format!("{}:2380,{}:2380,{}:2380", host(1), host(2), host(3))
    );
    assert_eq!(
        value_of(&out, 0, "ETCD_INITIAL_CLUSTER").unwrap(),
        format!(
            "etcd-1=http://{}:2380,etcd-2=http://{}:2380,etcd-3=http://{}:2380",
            host(1),
            host(2),
            host(3)
        )
    );

    // Once members have run, moving the start is denied, with the reason and the way out.
    let mut moved = out.clone();
    moved.spec.as_mut().unwrap().ordinals =
        Some(k8s_openapi::api::apps::v1::StatefulSetOrdinals { start: Some(0) });
    let verdict = common::check(&moved, Some(&svc), Some(&out));
    let denial = verdict.denial().expect("a start change is denied");
    assert!(
        denial.contains("spec.ordinals.start changes from 1 to 0")
            && denial.contains("keep spec.ordinals.start at 1"),
        "{denial}"
    );
    // The same object unchanged is fine.
    assert!(common::check(&out, Some(&svc), Some(&out)).is_allowed());
}

#[test]
fn a_tls_secret_makes_every_etcd_url_https_and_mounts_the_secret_where_members_are_called() {
    let (mut sts, svc) = etcd();
    common::annotate(&mut sts, "raft-injector.io/tls-secret", "etcd-tls");
    let out = injected(&sts, Some(&svc));
    for (name, value) in [
        ("RAFT_TLS_CA_FILE", "/etc/raft-injector/tls/ca.crt"),
        ("RAFT_TLS_CERT_FILE", "/etc/raft-injector/tls/tls.crt"),
        ("RAFT_TLS_KEY_FILE", "/etc/raft-injector/tls/tls.key"),
        (
            "ETCD_INITIAL_ADVERTISE_PEER_URLS",
            "https://$(RAFT_ID):2380",
        ),
        ("ETCD_LISTEN_PEER_URLS", "https://0.0.0.0:2380"),
        ("ETCD_LISTEN_CLIENT_URLS", "https://0.0.0.0:2379"),
        ("ETCD_ADVERTISE_CLIENT_URLS", "https://$(RAFT_ID):2379"),
        ("ETCD_CLIENT_CERT_AUTH", "true"),
        ("ETCD_PEER_CLIENT_CERT_AUTH", "true"),
        ("ETCD_TRUSTED_CA_FILE", "/etc/raft-injector/tls/ca.crt"),
        ("ETCD_PEER_KEY_FILE", "/etc/raft-injector/tls/tls.key"),
        ("ETCDCTL_ENDPOINTS", "https://$(RAFT_ID):2379"),
    ] {
        assert_eq!(value_of(&out, 0, name).as_deref(), Some(value), "{name}");
    }
    let cluster = value_of(&out, 0, "ETCD_INITIAL_CLUSTER").unwrap();
    assert_eq!(cluster.matches("=https://").count(), 3, "{cluster}");
    assert!(!cluster.contains("http://"), "{cluster}");

    let pod = out.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "raft-injector-tls")
        .expect("the Secret's volume");
    assert_eq!(
        volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("etcd-tls")
    );
    let mounted = |c: &k8s_openapi::api::core::v1::Container| {
        c.volume_mounts.iter().flatten().any(|m| {
            m.name == "raft-injector-tls"
                && m.mount_path == "/etc/raft-injector/tls"
                && m.read_only == Some(true)
        })
    };
    assert!(mounted(&pod.containers[0]), "the target container");
    for name in ["raft-injector-join", "raft-injector-reconcile"] {
        let c = pod
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == name)
            .unwrap();
        assert!(mounted(c), "{name} has the Secret mounted");
    }
    // Admitting it again changes nothing (the volume is not added twice).
    let again = mutate_with(&out, Some(&svc), Some(&out), &settings());
    assert!(again.0.is_empty(), "{again:?}");

    // Turning TLS off (or on) after injection is denied: the members were built for it.
    let mut off = out.clone();
    off.metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove("raft-injector.io/tls-secret");
    let denial = common::check(&off, Some(&svc), Some(&out))
        .denial()
        .expect("a TLS change is denied");
    assert!(
        denial.contains("raft-injector.io/tls-secret changes from \"etcd-tls\" to unset"),
        "{denial}"
    );
}

#[test]
fn user_set_values_are_never_overwritten() {
    let (mut sts, svc) = etcd();
    let container = common::first_container(&mut sts);
    container.env.as_mut().unwrap().push(EnvVar {
        name: "ETCD_LISTEN_CLIENT_URLS".to_owned(),
        value: Some("http://127.0.0.1:2379".to_owned()),
        value_from: None,
    });
    container.lifecycle = Some(
        serde_json::from_value(json!({"preStop": {"exec": {"command": ["/bin/drain"]}}})).unwrap(),
    );
    let out = injected(&sts, Some(&svc));
    assert_eq!(
        value_of(&out, 0, "ETCD_LISTEN_CLIENT_URLS").as_deref(),
        Some("http://127.0.0.1:2379")
    );
    assert_eq!(
        env_of(&out, 0)
            .iter()
            .filter(|e| e.name == "ETCD_LISTEN_CLIENT_URLS")
            .count(),
        1
    );
    let container = &out
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    let hook = container
        .lifecycle
        .as_ref()
        .unwrap()
        .pre_stop
        .as_ref()
        .unwrap();
    assert_eq!(
        hook.exec.as_ref().unwrap().command.as_deref(),
        Some(&["/bin/drain".to_owned()][..])
    );
    let status = raft_injector::policy::status::Status::of(&out).unwrap();
    assert!(
        !status.owns_env("ETCD_LISTEN_CLIENT_URLS"),
        "the user's var is not recorded as owned"
    );
    // Re-admitting keeps it that way.
    assert!(mutate_with(&out, Some(&svc), None, &settings())
        .0
        .is_empty());
}

#[test]
fn helper_volume_init_container_and_pre_stop_are_injected() {
    let (sts, svc) = ratis();
    let out = injected(&sts, Some(&svc));
    let pod = out.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let volume = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "raft-injector")
        .expect("volume");
    assert!(volume.empty_dir.is_some());
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        init.image.as_deref(),
        Some("registry.example/raft-injector:test")
    );
    assert_eq!(
        init.command.as_deref().unwrap(),
        [
            "/usr/local/bin/raft-injector",
            "install",
            "--to",
            "/raft-injector"
        ]
    );
    let container = &pod.containers[0];
    let mount = container
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "raft-injector")
        .unwrap();
    assert_eq!(mount.mount_path, "/raft-injector");
    let hook = container
        .lifecycle
        .as_ref()
        .unwrap()
        .pre_stop
        .as_ref()
        .unwrap();
    assert_eq!(
        hook.exec.as_ref().unwrap().command.as_deref().unwrap(),
        ["/raft-injector/raft-injector", "member", "leave"]
    );
}

#[test]
fn status_annotation_key_is_escaped_in_the_patch() {
    let (mut sts, svc) = ratis();
    sts.metadata.annotations = Some([("team".to_owned(), "storage".to_owned())].into());
    let patch = serde_json::to_value(mutate_with(&sts, Some(&svc), None, &settings())).unwrap();
    let paths: Vec<&str> = patch
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/metadata/annotations/raft-injector.io~1status"),
        "{paths:?}"
    );
    let out = injected(&sts, Some(&svc));
    let status = raft_injector::policy::status::Status::of(&out).expect("status annotation");
    assert_eq!(status.bootstrap_size, 3);
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(status.env.len(), 12);
    assert_eq!(status.hash.len(), 64);
}

fn with_containers(names: &[&str]) -> StatefulSet {
    let (mut sts, _) = ratis();
    let pod = sts.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    let first = pod.containers[0].clone();
    pod.containers = names
        .iter()
        .map(|n| {
            let mut c = first.clone();
            c.name = (*n).to_owned();
            c
        })
        .collect();
    sts
}

#[test]
fn target_container_is_annotation_then_only_then_named_like_the_statefulset_then_first() {
    use raft_injector::policy::resolve::target_container;
    assert_eq!(target_container(&with_containers(&["app"])), Ok(0));
    assert_eq!(
        target_container(&with_containers(&["proxy", "counter"])),
        Ok(1)
    );
    assert_eq!(target_container(&with_containers(&["proxy", "app"])), Ok(0));
    let mut annotated = with_containers(&["proxy", "counter", "app"]);
    annotated.metadata.annotations =
        Some([("raft-injector.io/container".to_owned(), "app".to_owned())].into());
    assert_eq!(target_container(&annotated), Ok(2));
}

#[test]
fn peer_port_is_annotation_then_flavor_then_named_port_then_service_port() {
    let (sts, svc) = ratis();
    let port = |sts: &StatefulSet, svc: &Service| {
        let out = injected(sts, Some(svc));
        value_of(&out, 0, "RAFT_PORT").unwrap()
    };
    assert_eq!(port(&sts, &svc), "9872", "named container port");

    let mut annotated = sts.clone();
    annotated.metadata.annotations =
        Some([("raft-injector.io/port".to_owned(), "7000".to_owned())].into());
    assert_eq!(port(&annotated, &svc), "7000", "annotation wins");

    let mut unnamed = sts.clone();
    pod_mut(&mut unnamed).containers[0].ports = None;
    let mut target = svc.clone();
    target.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].target_port =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9999));
    assert_eq!(
        port(&unnamed, &target),
        "9999",
        "the Service's only port, by targetPort"
    );
    assert_eq!(port(&unnamed, &svc), "9872", "the Service's only port");

    let (etcd_sts, etcd_svc) = etcd();
    assert_eq!(port(&etcd_sts, &etcd_svc), "2380", "etcd flavor default");
}

#[test]
fn a_cluster_created_stopped_gets_its_peer_list_on_first_start() {
    let (mut sts, svc) = ratis();
    sts.spec.as_mut().unwrap().replicas = Some(0);
    let stopped = injected(&sts, Some(&svc));
    assert_eq!(
        value_of(&stopped, 0, "RAFT_CLUSTER_SIZE").as_deref(),
        Some("0")
    );
    let mut started = stopped.clone();
    started.spec.as_mut().unwrap().replicas = Some(3);
    let patch = mutate_with(&started, Some(&svc), Some(&stopped), &settings());
    let started: StatefulSet = patched(&started, &patch);
    assert_eq!(
        value_of(&started, 0, "RAFT_CLUSTER_SIZE").as_deref(),
        Some("3")
    );
    assert!(value_of(&started, 0, "RAFT_PEERS")
        .unwrap()
        .contains("counter-2."));
    // and from then on it is frozen
    let mut scaled = started.clone();
    scaled.spec.as_mut().unwrap().replicas = Some(5);
    assert!(
        mutate_with(&scaled, Some(&svc), Some(&started), &settings())
            .0
            .is_empty()
    );
}

fn init_names(sts: &StatefulSet) -> Vec<String> {
    let spec = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    spec.init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect()
}

#[test]
fn the_join_container_of_a_cluster_created_stopped_is_brought_up_to_date_on_first_start() {
    let (mut sts, svc) = etcd();
    sts.spec.as_mut().unwrap().replicas = Some(0);
    let stopped = injected(&sts, Some(&svc));
    let join_size = |sts: &StatefulSet| {
        let inits = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let join = inits
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == "raft-injector-join")
            .expect("a join init container");
        join.env
            .iter()
            .flatten()
            .find(|e| e.name == "RAFT_CLUSTER_SIZE")
            .and_then(|e| e.value.clone())
    };
    assert_eq!(join_size(&stopped).as_deref(), Some("0"));
    let mut started = stopped.clone();
    started.spec.as_mut().unwrap().replicas = Some(3);
    let patch = mutate_with(&started, Some(&svc), Some(&stopped), &settings());
    let started: StatefulSet = patched(&started, &patch);
    assert_eq!(join_size(&started).as_deref(), Some("3"));
    assert_eq!(
        value_of(&started, 0, "RAFT_CLUSTER_SIZE").as_deref(),
        Some("3"),
        "the target and its join container agree"
    );
}

#[test]
fn etcd_gets_the_reconcile_sidecar_as_a_native_sidecar_after_join() {
    let (sts, svc) = etcd();
    let stored = injected(&sts, Some(&svc));
    assert_eq!(
        init_names(&stored),
        [
            "raft-injector",
            "raft-injector-join",
            "raft-injector-reconcile"
        ]
    );
    let spec = stored
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let sidecar = &spec.init_containers.as_ref().unwrap()[2];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert_eq!(
        sidecar.image.as_deref(),
        Some("registry.example/raft-injector:test")
    );
    let env: Vec<&str> = sidecar
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    for needed in [
        "POD_NAME",
        "POD_NAMESPACE",
        "RAFT_ORDINAL",
        "RAFT_PEERS",
        "ETCD_ADVERTISE_CLIENT_URLS",
    ] {
        assert!(env.contains(&needed), "{needed} in {env:?}");
    }
    // The generic flavor has no member list to repair from: no sidecar.
    let (ratis, ratis_svc) = ratis();
    assert_eq!(
        init_names(&injected(&ratis, Some(&ratis_svc))),
        ["raft-injector"]
    );
}

#[test]
fn the_generic_flavor_gets_the_reconcile_sidecar_with_a_members_url_but_never_the_exec_wrapper() {
    let (mut sts, svc) = ratis();
    common::annotate(
        &mut sts,
        "raft-injector.io/join-url",
        "POST http://{peer}:8080/raft/join?id={name}&address={address}",
    );
    common::annotate(
        &mut sts,
        "raft-injector.io/members-url",
        "http://{peer}:8080/raft/members",
    );
    let stored = injected(&sts, Some(&svc));
    assert_eq!(
        init_names(&stored),
        [
            "raft-injector",
            "raft-injector-join",
            "raft-injector-reconcile"
        ]
    );
    let spec = stored.spec.unwrap().template.spec.unwrap();
    let sidecar = &spec.init_containers.as_ref().unwrap()[2];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    let names: Vec<&str> = sidecar
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    assert!(
        names.contains(&"RAFT_PEERS") && names.contains(&"POD_NAME"),
        "the member's env: {names:?}"
    );
    assert_eq!(
        spec.containers[0].command,
        sts.spec.unwrap().template.spec.unwrap().containers[0].command,
        "the app's command is left alone"
    );
}

#[test]
fn the_generic_flavor_gets_the_join_init_container_only_with_a_join_url() {
    let (mut sts, svc) = ratis();
    assert_eq!(init_names(&injected(&sts, Some(&svc))), ["raft-injector"]);
    common::annotate(
        &mut sts,
        "raft-injector.io/join-url",
        "POST http://{peer}:8080/raft/join?id={name}&address={address}",
    );
    let stored = injected(&sts, Some(&svc));
    assert_eq!(
        init_names(&stored),
        ["raft-injector", "raft-injector-join"],
        "no reconcile sidecar and no exec wrapper outside the etcd flavor"
    );
    let spec = stored
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let join = &spec.init_containers.as_ref().unwrap()[1];
    let target = &spec.containers[0];
    assert_eq!(join.image, target.image, "runs in the app's image");
    assert_eq!(
        join.command.as_deref().unwrap(),
        ["/raft-injector/raft-injector", "member", "join"]
    );
    let names: Vec<&str> = join.env.iter().flatten().map(|e| e.name.as_str()).collect();
    for needed in [
        "POD_NAME",
        "POD_NAMESPACE",
        "RAFT_ORDINAL",
        "RAFT_ID",
        "RAFT_ADDRESS",
        "RAFT_PEERS",
        "RAFT_CLUSTER_SIZE",
    ] {
        assert!(names.contains(&needed), "{needed} in {names:?}");
    }
    assert_eq!(
        target.command,
        sts.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .command
    );
    // Idempotent: the injected object gets an empty patch.
    assert!(mutate_with(&stored, Some(&svc), None, &settings())
        .0
        .is_empty());
}

#[test]
fn a_statefulset_injected_before_the_sidecar_existed_is_not_rolled_to_add_it() {
    let (sts, svc) = etcd();
    let mut older = injected(&sts, Some(&svc));
    let spec = older.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    spec.init_containers
        .as_mut()
        .unwrap()
        .retain(|c| c.name != "raft-injector-reconcile");
    let mut updated = older.clone();
    updated.spec.as_mut().unwrap().replicas = Some(5);
    let patch = mutate_with(&updated, Some(&svc), Some(&older), &settings());
    assert!(patch.0.is_empty(), "{patch:?}");
}

/// The containers injected next to the member (join, reconcile) and their env.
fn injected_envs(sts: &StatefulSet) -> Vec<(String, Vec<EnvVar>)> {
    let spec = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    spec.init_containers
        .iter()
        .flatten()
        .filter(|c| c.name == "raft-injector-join" || c.name == "raft-injector-reconcile")
        .map(|c| (c.name.clone(), c.env.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn join_and_reconcile_containers_get_a_copy_of_the_members_whole_env() {
    let (etcd, etcd_svc) = etcd();
    let (mut ratis, ratis_svc) = ratis();
    common::annotate(
        &mut ratis,
        "raft-injector.io/join-url",
        "POST http://{peer}:8080/raft/join?id={name}",
    );
    let user_init = json!({"name": "setup", "image": "busybox", "command": ["true"]});
    let shapes = |sts: &StatefulSet| {
        let mut no_env = sts.clone();
        pod_mut(&mut no_env).containers[0].env = None;
        let mut with_inits = sts.clone();
        pod_mut(&mut with_inits).init_containers = Some(vec![
            serde_json::from_value(user_init.clone()).unwrap(),
            serde_json::from_value(json!({"name": "migrate", "image": "busybox"})).unwrap(),
        ]);
        let mut user_value = sts.clone();
        pod_mut(&mut user_value).containers[0]
            .env
            .get_or_insert_with(Vec::new)
            .push(EnvVar {
                name: "RAFT_CLUSTER_DOMAIN".into(),
                value: Some("example.internal".into()),
                ..EnvVar::default()
            });
        [sts.clone(), no_env, with_inits, user_value]
    };
    for (sts, svc, expected) in shapes(&etcd)
        .into_iter()
        .map(|s| (s, &etcd_svc, 2))
        .chain(shapes(&ratis).into_iter().map(|s| (s, &ratis_svc, 1)))
    {
        let patch = mutate_with(&sts, Some(svc), None, &settings());
        let ops = serde_json::to_value(&patch).unwrap();
        let copies = ops
            .as_array()
            .unwrap()
            .iter()
            .filter(|op| op["op"] == "copy")
            .count();
        assert_eq!(copies, expected, "one copy per container: {ops:#}");
        let stored = patched(&sts, &patch);
        let member = env_of(&stored, 0);
        assert!(member.iter().any(|e| e.name == "RAFT_PEERS"), "{member:?}");
        let envs = injected_envs(&stored);
        assert_eq!(envs.len(), expected, "{envs:?}");
        for (name, mut env) in envs {
            // etcd's join container also learns what etcd's command line says of its data.
            if name == "raft-injector-join" && expected == 2 {
                let from = env.pop().expect("env");
                assert_eq!(
                    (from.name.as_str(), from.value.as_deref()),
                    ("RAFT_DATA_FROM", Some("flags-then-env")),
                    "{env:?}"
                );
            }
            assert_eq!(env, member, "{name} runs with the member's env");
        }
        // The user's own init containers keep their place and get nothing.
        let inits = init_names(&stored);
        if inits.contains(&"setup".to_owned()) {
            assert_eq!(inits[..2], ["setup", "migrate"], "{inits:?}");
            let spec = stored
                .spec
                .as_ref()
                .unwrap()
                .template
                .spec
                .as_ref()
                .unwrap();
            assert!(spec.init_containers.as_ref().unwrap()[..2]
                .iter()
                .all(|c| c.env.is_none()));
        }
    }
}
