//! Every Raft rule and warning of SPEC §2–3, on the pure policy functions.

mod common;

use common::{annotate, check, services, settings, statefulset};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Probe, Service};
use raft_injector::policy::scale::validate_scale;
use raft_injector::policy::{MissingService, Settings};
use serde_json::json;

fn etcd() -> (StatefulSet, Service) {
    let svc = services("examples/etcd.yaml").remove(0);
    (statefulset("examples/etcd.yaml"), svc)
}

fn ratis() -> (StatefulSet, Service) {
    let svc = services("examples/ratis-app.yaml").remove(0);
    (statefulset("examples/ratis-app.yaml"), svc)
}

fn spec(sts: &mut StatefulSet) -> &mut k8s_openapi::api::apps::v1::StatefulSetSpec {
    sts.spec.as_mut().expect("example has a spec")
}

/// The warning every etcd StatefulSet without a TLS Secret gets when it is created.
const PLAINTEXT: &str = "etcd runs without TLS";

#[test]
fn examples_pass_without_warnings_but_plaintext_etcd() {
    for (sts, svc) in [etcd(), ratis()] {
        let verdict = check(&sts, Some(&svc), None);
        assert!(verdict.is_allowed(), "{:?}", verdict.denial());
        let others: Vec<_> = verdict
            .warnings
            .iter()
            .filter(|w| !w.contains(PLAINTEXT))
            .collect();
        assert!(others.is_empty(), "{others:?}");
    }
    // etcd without TLS is told so when created, once: not on later updates.
    let (sts, svc) = etcd();
    let created = check(&sts, Some(&svc), None).warning_messages();
    assert_eq!(
        created.iter().filter(|w| w.contains(PLAINTEXT)).count(),
        1,
        "{created:?}"
    );
    assert!(created
        .iter()
        .any(|w| w.contains("raft-injector.io/tls-secret")));
    let updated = check(&sts, Some(&svc), Some(&sts)).warning_messages();
    assert!(
        !updated.iter().any(|w| w.contains(PLAINTEXT)),
        "{updated:?}"
    );
    let mut tls = sts.clone();
    common::annotate(&mut tls, "raft-injector.io/tls-secret", "etcd-tls");
    let quiet = check(&tls, Some(&svc), None).warning_messages();
    assert!(!quiet.iter().any(|w| w.contains(PLAINTEXT)), "{quiet:?}");
}

#[test]
fn rule1_service_name_must_be_set() {
    let (mut sts, svc) = ratis();
    spec(&mut sts).service_name = None;
    let denial = check(&sts, Some(&svc), None).denial().expect("denied");
    assert!(
        denial.starts_with("StatefulSet default/counter: "),
        "{denial}"
    );
    assert!(denial.contains("spec.serviceName is not set"), "{denial}");
}

#[test]
fn rule2_service_must_exist() {
    let (sts, _) = ratis();
    let denial = check(&sts, None, None).denial().expect("denied");
    assert!(
        denial.contains("Service default/counter does not exist"),
        "{denial}"
    );
}

#[test]
fn rule2_missing_service_is_a_warning_in_warn_mode() {
    let (sts, _) = ratis();
    let settings = Settings {
        missing_service: MissingService::Warn,
        ..settings()
    };
    let verdict = common::check_with(&sts, None, None, &settings, false);
    assert!(verdict.is_allowed(), "{:?}", verdict.denial());
    assert!(
        verdict
            .warnings
            .iter()
            .any(|w| w.contains("--missing-service=warn")),
        "{:?}",
        verdict.warnings
    );
}

#[test]
fn rule3_service_must_be_headless() {
    let (sts, mut svc) = ratis();
    svc.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.12".to_owned());
    let denial = check(&sts, Some(&svc), None).denial().expect("denied");
    assert!(denial.contains("spec.clusterIP is 10.96.0.12"), "{denial}");
    assert!(denial.contains("clusterIP: None"), "{denial}");
}

#[test]
fn rule4_service_selector_must_be_set() {
    let (sts, mut svc) = ratis();
    svc.spec.as_mut().unwrap().selector = None;
    let denial = check(&sts, Some(&svc), None).denial().expect("denied");
    assert!(denial.contains("has no spec.selector"), "{denial}");
}

#[test]
fn rule4_service_selector_must_match_the_pod_template() {
    let (sts, mut svc) = ratis();
    svc.spec.as_mut().unwrap().selector = Some([("app".to_owned(), "other".to_owned())].into());
    let denial = check(&sts, Some(&svc), None).denial().expect("denied");
    assert!(
        denial.contains("selects app=other but the pod template is labelled app=counter"),
        "{denial}"
    );
}

#[test]
fn rule5_even_replicas_are_denied_with_the_spec_message() {
    let (mut sts, svc) = etcd();
    spec(&mut sts).replicas = Some(4);
    assert_eq!(
        check(&sts, Some(&svc), None).denial().as_deref(),
        Some(
            "StatefulSet default/etcd: spec.replicas is 4; a Raft cluster of 4 tolerates no more failures than \
             3 and needs a larger quorum — use 3 or 5"
        )
    );
}

#[test]
fn rule5_unset_replicas_means_one_and_passes() {
    let (mut sts, svc) = etcd();
    spec(&mut sts).replicas = None;
    assert!(check(&sts, Some(&svc), None).is_allowed());
}

#[test]
fn rule5_zero_replicas_is_allowed_with_a_warning() {
    let (mut sts, svc) = etcd();
    spec(&mut sts).replicas = Some(0);
    let verdict = check(&sts, Some(&svc), None);
    assert!(verdict.is_allowed());
    assert!(verdict
        .warnings
        .iter()
        .any(|w| w.contains("spec.replicas is 0")));
}

#[test]
fn rule6_peer_port_must_be_resolvable() {
    let (mut sts, mut svc) = ratis();
    spec(&mut sts).template.spec.as_mut().unwrap().containers[0].ports = None;
    let mut second = svc.spec.as_ref().unwrap().ports.clone().unwrap()[0].clone();
    second.name = Some("metrics".to_owned());
    second.port = 9090;
    svc.spec
        .as_mut()
        .unwrap()
        .ports
        .as_mut()
        .unwrap()
        .push(second);
    let denial = check(&sts, Some(&svc), None).denial().expect("denied");
    assert!(
        denial.contains("no Raft peer port could be resolved"),
        "{denial}"
    );
    assert!(denial.contains("raft-injector.io/port"), "{denial}");
}

#[test]
fn every_violation_is_listed_in_one_message() {
    let (mut sts, mut svc) = ratis();
    spec(&mut sts).replicas = Some(6);
    svc.spec.as_mut().unwrap().cluster_ip = Some("10.0.0.1".to_owned());
    annotate(&mut sts, "raft-injector.io/port", "peer");
    let denial = check(&sts, Some(&svc), None).denial().expect("denied");
    assert!(denial.contains("3 problems: (1)"), "{denial}");
    for part in [
        "raft-injector.io/port is \"peer\"",
        "not headless",
        "spec.replicas is 6",
    ] {
        assert!(denial.contains(part), "{part} missing from {denial}");
    }
}

#[test]
fn bad_annotations_are_denied() {
    for (key, value, expected) in [
        ("raft-injector.io/flavor", "consul", "not a known flavor"),
        ("raft-injector.io/client-port", "0", "not a port number"),
        (
            "raft-injector.io/container",
            "sidecar",
            "has no such container",
        ),
        (
            "raft-injector.io/join-url",
            "http://{peer}:8080/join?id={pod_name}",
            "annotation raft-injector.io/join-url is \"http://{peer}:8080/join?id={pod_name}\": {pod_name} is not a placeholder",
        ),
        (
            "raft-injector.io/leave-url",
            "{peer}:8080/leave",
            "annotation raft-injector.io/leave-url is \"{peer}:8080/leave\": \"{peer}:8080/leave\" is not an http:// or https:// URL",
        ),
    ] {
        let (mut sts, svc) = etcd();
        annotate(&mut sts, key, value);
        let denial = check(&sts, Some(&svc), None).denial().expect("denied");
        assert!(denial.contains(expected), "{key}: {denial}");
    }
}

#[test]
fn rule7_scale_to_even_is_denied() {
    let (sts, _) = etcd();
    let denial = validate_scale(&sts, "default", 3, 4, &settings())
        .denial()
        .expect("denied");
    assert!(denial.contains("spec.replicas is 4"), "{denial}");
    assert!(validate_scale(&sts, "default", 3, 5, &settings()).is_allowed());
}

#[test]
fn rule8_scale_down_by_more_than_two_is_denied_with_steps() {
    let (sts, _) = etcd();
    let denial = validate_scale(&sts, "default", 7, 1, &settings())
        .denial()
        .expect("denied");
    assert!(
        denial.contains("goes from 7 to 1, removing 6 members"),
        "{denial}"
    );
    assert!(denial.contains("(7→5→3→1)"), "{denial}");
    assert!(validate_scale(&sts, "default", 5, 3, &settings()).is_allowed());
    assert!(validate_scale(&sts, "default", 7, 9, &settings()).is_allowed());
}

fn retained(mut sts: StatefulSet) -> StatefulSet {
    spec(&mut sts)
        .persistent_volume_claim_retention_policy
        .as_mut()
        .unwrap()
        .when_scaled = Some("Retain".to_owned());
    sts
}

#[test]
fn rule8_scaling_to_zero_stops_the_cluster_and_is_allowed() {
    let sts = retained(etcd().0);
    let verdict = validate_scale(&sts, "default", 7, 0, &settings());
    assert!(verdict.is_allowed(), "{:?}", verdict.denial());
    assert!(verdict.warnings.iter().any(|w| w.contains("stopped")));
}

#[test]
fn stopping_a_cluster_whose_volumes_go_with_its_pods_is_denied() {
    // Found on real pods: 3→0→3 with whenScaled: Delete came back as an empty cluster with
    // the same member IDs.
    let (sts, svc) = etcd();
    let denial = validate_scale(&sts, "default", 3, 0, &settings())
        .denial()
        .expect("denied");
    assert!(denial.contains("whenScaled is Delete"), "{denial}");
    assert!(denial.contains("set whenScaled: Retain"), "{denial}");
    let verdict = validate_scale(&sts, "default", 3, 0, &settings());
    assert!(
        verdict
            .warnings
            .iter()
            .all(|w| !w.contains("keep their membership and data")),
        "no stop warning on a denied stop: {:?}",
        verdict.warnings
    );
    // The same through spec.replicas, unless the same apply switches to Retain.
    let mut stopped = sts.clone();
    spec(&mut stopped).replicas = Some(0);
    assert!(check(&stopped, Some(&svc), Some(&sts)).denial().is_some());
    let stopped = retained(stopped);
    assert!(check(&stopped, Some(&svc), Some(&sts)).is_allowed());
    // Creating a stopped StatefulSet deletes nothing; starting one is not a stop.
    let mut created = sts.clone();
    spec(&mut created).replicas = Some(0);
    assert!(check(&created, Some(&svc), None).is_allowed());
    assert!(validate_scale(&sts, "default", 0, 3, &settings()).is_allowed());
}

#[test]
fn rule8_applies_to_spec_replicas_on_update() {
    let (old, svc) = etcd();
    let mut old = old;
    spec(&mut old).replicas = Some(7);
    let mut new = old.clone();
    spec(&mut new).replicas = Some(3);
    let denial = check(&new, Some(&svc), Some(&old))
        .denial()
        .expect("denied");
    assert!(denial.contains("goes from 7 to 3"), "{denial}");
    spec(&mut new).replicas = Some(5);
    assert!(check(&new, Some(&svc), Some(&old)).is_allowed());
}

#[test]
fn scaling_up_a_never_bootstrapped_cluster_is_denied() {
    let (mut sts, _) = etcd();
    annotate(
        &mut sts,
        "raft-injector.io/status",
        r#"{"version":"0.1.0","bootstrapSize":0,"flavor":"etcd","env":[],"hash":""}"#,
    );
    let denial = validate_scale(&sts, "default", 0, 3, &settings())
        .denial()
        .expect("denied");
    assert!(denial.contains("created with 0 replicas"), "{denial}");
}

/// The warnings of creating `sts`, other than the one about plaintext etcd.
fn warnings_of(sts: &StatefulSet, svc: &Service) -> Vec<String> {
    let verdict = check(sts, Some(svc), None);
    assert!(verdict.is_allowed(), "{:?}", verdict.denial());
    verdict
        .warning_messages()
        .into_iter()
        .filter(|w| !w.contains(PLAINTEXT))
        .collect()
}

#[test]
fn warns_when_not_ready_addresses_are_not_published() {
    let (sts, mut svc) = etcd();
    svc.spec.as_mut().unwrap().publish_not_ready_addresses = None;
    let warnings = warnings_of(&sts, &svc);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with(
        "StatefulSet default/etcd: Service default/etcd does not set spec.publishNotReadyAddresses"
    ));
}

#[test]
fn warns_on_ordered_ready_with_a_readiness_probe() {
    let (mut sts, svc) = etcd();
    spec(&mut sts).pod_management_policy = None;
    assert!(warnings_of(&sts, &svc).is_empty(), "no probe, no warning");
    spec(&mut sts).template.spec.as_mut().unwrap().containers[0].readiness_probe =
        Some(Probe::default());
    let warnings = warnings_of(&sts, &svc);
    assert!(
        warnings.iter().any(|w| w.contains("OrderedReady")),
        "{warnings:?}"
    );
}

#[test]
fn warns_above_seven_replicas() {
    let (mut sts, svc) = etcd();
    spec(&mut sts).replicas = Some(9);
    assert!(warnings_of(&sts, &svc)
        .iter()
        .any(|w| w.contains("spec.replicas is 9")));
    spec(&mut sts).replicas = Some(7);
    assert!(warnings_of(&sts, &svc).is_empty());
}

#[test]
fn warns_when_claims_are_retained_on_scale_down() {
    let (mut sts, svc) = etcd();
    spec(&mut sts).persistent_volume_claim_retention_policy = None;
    let warnings = warnings_of(&sts, &svc);
    assert!(
        warnings.iter().any(|w| w.contains("whenScaled is Retain")),
        "{warnings:?}"
    );
}

#[test]
fn warns_when_the_container_has_its_own_pre_stop_hook() {
    let (mut sts, svc) = etcd();
    let container = &mut spec(&mut sts).template.spec.as_mut().unwrap().containers[0];
    container.lifecycle = Some(
        serde_json::from_value(json!({"preStop": {"exec": {"command": ["sh", "-c", "true"]}}}))
            .unwrap(),
    );
    let warnings = warnings_of(&sts, &svc);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("already has a preStop hook")),
        "{warnings:?}"
    );
}

#[test]
fn warns_when_the_user_sets_an_injected_env_var() {
    let (mut sts, svc) = etcd();
    let container = &mut spec(&mut sts).template.spec.as_mut().unwrap().containers[0];
    container
        .env
        .get_or_insert_with(Vec::new)
        .push(serde_json::from_value(json!({"name": "RAFT_PORT", "value": "7000"})).unwrap());
    let warnings = warnings_of(&sts, &svc);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("sets env RAFT_PORT itself")
                && w.contains("instead of the injected \"2380\"")),
        "{warnings:?}"
    );
}

#[test]
fn a_missing_service_in_a_server_dry_run_is_a_warning() {
    let (sts, _) = ratis();
    let settings = settings();
    let verdict = common::check_with(&sts, None, None, &settings, true);
    assert!(verdict.is_allowed(), "{:?}", verdict.denial());
    assert!(
        verdict
            .warnings
            .iter()
            .any(|w| w.contains("allowed in this dry run")),
        "{:?}",
        verdict.warnings
    );
}

#[test]
fn join_and_leave_urls_are_a_pair_for_the_generic_flavor_and_ignored_by_etcd() {
    let (mut generic, svc) = ratis();
    annotate(
        &mut generic,
        "raft-injector.io/leave-url",
        "POST http://{peer}:8080/leave?id={name}",
    );
    let verdict = check(&generic, Some(&svc), None);
    assert!(verdict.is_allowed());
    let warnings = verdict.warning_messages().join("\n");
    assert!(
        warnings.contains("members added by a scale-up start outside the Raft group"),
        "{warnings}"
    );
    annotate(
        &mut generic,
        "raft-injector.io/join-url",
        "POST http://{peer}:8080/join?id={name}",
    );
    let warnings = check(&generic, Some(&svc), None)
        .warning_messages()
        .join("\n");
    assert!(!warnings.contains("join-url"), "{warnings}");

    let (mut etcd, svc) = etcd();
    annotate(
        &mut etcd,
        "raft-injector.io/join-url",
        "POST http://{peer}:8080/join?id={name}",
    );
    let warnings = check(&etcd, Some(&svc), None).warning_messages().join("\n");
    assert!(
        warnings.contains(
            "the etcd flavor changes the membership through etcd itself and ignores \
             raft-injector.io/join-url; remove the annotation"
        ),
        "{warnings}"
    );
}
