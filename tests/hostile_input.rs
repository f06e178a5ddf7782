//! Input meant to break the webhook, or that breaks it by accident: replica counts at the
//! ends of `int32`, oversized names and annotations, forged bookkeeping, flavor changes and
//! overridden env vars. Each answer must be a short, clear decision; nothing may grow with
//! the replica count.

mod common;

use common::{
    accepts, annotate, app, check, lookup, patch_of, rejects, respond, services, settings,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use raft_injector::policy::scale::validate_scale;
use raft_injector::policy::{mutate, Context, Settings};
use serde_json::{json, Value};

/// No message, warning or patch the webhook writes may be longer than this.
const SMALL: usize = 2_000;

fn etcd() -> (StatefulSet, Service) {
    (
        common::statefulset("examples/etcd.yaml"),
        services("examples/etcd.yaml").remove(0),
    )
}

fn with_replicas(sts: &StatefulSet, replicas: i32) -> StatefulSet {
    let mut sts = sts.clone();
    sts.spec.as_mut().unwrap().replicas = Some(replicas);
    sts
}

fn ctx<'a>(
    svc: Option<&'a Service>,
    old: Option<&'a StatefulSet>,
    settings: &'a Settings,
) -> Context<'a> {
    Context {
        namespace: "default",
        service: svc,
        old,
        settings,
        dry_run: false,
    }
}

/// The denial of `sts`, asserting it is short and that no patch can be built.
fn denied(sts: &StatefulSet, svc: &Service, old: Option<&StatefulSet>) -> String {
    let settings = settings();
    let verdict = check(sts, Some(svc), old);
    let denial = verdict.denial().expect("denied");
    assert!(
        denial.len() < SMALL,
        "{} bytes: {denial:.300}",
        denial.len()
    );
    assert!(verdict.warnings.iter().all(|w| w.len() < SMALL));
    if old.is_none() {
        assert!(
            mutate(sts, &ctx(Some(svc), old, &settings)).is_err(),
            "no patch is built for a denied object"
        );
    }
    denial
}

#[test]
fn replica_counts_outside_the_bound_are_denied_in_a_few_words() {
    let (sts, svc) = etcd();
    for replicas in [i32::MAX, 99_999, 101, 100] {
        let denial = denied(&with_replicas(&sts, replicas), &svc, None);
        assert!(
            denial.contains(&format!(
                "spec.replicas is {replicas}, above the 99 members raft-injector allows"
            )),
            "{denial}"
        );
    }
    for replicas in [-1, -2, i32::MIN] {
        let denial = denied(&with_replicas(&sts, replicas), &svc, None);
        assert!(
            denial.contains(&format!(
                "spec.replicas is {replicas}; a replica count cannot be negative"
            )),
            "{denial}"
        );
    }
    assert!(check(&with_replicas(&sts, 99), Some(&svc), None).is_allowed());
}

#[test]
fn max_replicas_setting_moves_the_bound() {
    let (sts, svc) = etcd();
    let settings = Settings {
        max_replicas: 5,
        ..settings()
    };
    let verdict = common::check_with(&with_replicas(&sts, 7), Some(&svc), None, &settings, false);
    assert!(verdict.denial().unwrap().contains("above the 5 members"));
    let verdict = common::check_with(&with_replicas(&sts, 5), Some(&svc), None, &settings, false);
    assert!(verdict.is_allowed(), "{:?}", verdict.denial());
}

#[test]
fn huge_scale_downs_get_a_short_step_list() {
    let (sts, svc) = etcd();
    let old = with_replicas(&sts, 20_000_001);
    let denial = denied(&with_replicas(&sts, 1), &svc, Some(&old));
    assert!(
        denial.contains("goes from 20000001 to 1, removing 20000000 members"),
        "{denial}"
    );
    assert!(
        denial.contains("(20000001→19999999→19999997→…→1)"),
        "{denial}"
    );
    // And from the far ends of int32, without overflow in any build profile.
    let old = with_replicas(&sts, i32::MAX);
    denied(&with_replicas(&sts, i32::MIN), &svc, Some(&old));
    let verdict = validate_scale(&sts, "default", i32::MIN, i32::MAX, &settings());
    assert!(verdict.denial().unwrap().len() < SMALL);
}

#[test]
fn scale_up_adds_at_most_two_members_at_a_time() {
    let (sts, _) = etcd();
    for (old, new) in [(3, 7), (3, 9), (1, 5)] {
        let denial = validate_scale(&sts, "default", old, new, &settings())
            .denial()
            .unwrap_or_else(|| panic!("{old}→{new} is denied"));
        assert!(
            denial.contains(&format!("adding {} members in one step", new - old)),
            "{denial}"
        );
        assert!(
            denial.contains("scale up by at most 2 at a time"),
            "{denial}"
        );
    }
    // 3→7 names the way there.
    let denial = validate_scale(&sts, "default", 3, 7, &settings())
        .denial()
        .unwrap();
    assert!(denial.contains("(3→5→7)"), "{denial}");
    for (old, new) in [(3, 5), (1, 3), (0, 7), (5, 7)] {
        let verdict = validate_scale(&sts, "default", old, new, &settings());
        assert!(verdict.is_allowed(), "{old}→{new}: {:?}", verdict.denial());
    }
}

#[test]
fn scale_up_on_update_is_limited_too() {
    let (sts, svc) = etcd();
    let denial = denied(&with_replicas(&sts, 9), &svc, Some(&with_replicas(&sts, 3)));
    assert!(denial.contains("adding 6 members in one step"), "{denial}");
}

#[test]
fn the_scale_subresource_checks_the_bound() {
    let (sts, _) = etcd();
    for new in [i32::MAX, 101, -1] {
        let verdict = validate_scale(&sts, "default", 3, new, &settings());
        let denial = verdict.denial().expect("denied");
        assert!(
            denial.contains(&format!("spec.replicas is {new}")),
            "{denial}"
        );
        assert!(denial.len() < SMALL);
    }
}

#[test]
fn a_forged_bootstrap_size_in_the_status_annotation_is_denied() {
    let (mut sts, svc) = etcd();
    annotate(
        &mut sts,
        "raft-injector.io/status",
        r#"{"version":"0.1.0","bootstrapSize":2147483647,"flavor":"etcd","env":[],"hash":""}"#,
    );
    let denial = denied(&sts, &svc, None);
    assert!(
        denial.contains("records a bootstrap size of 2147483647, outside 0..99"),
        "{denial}"
    );
}

#[test]
fn oversized_names_and_annotations_are_denied_and_not_echoed_whole() {
    let (sts, svc) = etcd();
    let long = "a".repeat(100_000);

    let mut named = sts.clone();
    named.metadata.name = Some(long.clone());
    let denial = denied(&named, &svc, None);
    assert!(denial.contains("metadata.name is \"aaaa"), "{denial:.300}");
    assert!(denial.contains("(100000 bytes)"), "{denial:.300}");

    let mut dotted = sts.clone();
    dotted.metadata.name = Some("etcd.prod".to_owned());
    assert!(denied(&dotted, &svc, None).contains("must be a DNS label"));

    for key in [
        "raft-injector.io/cluster-domain",
        "raft-injector.io/container",
        "raft-injector.io/port",
        "raft-injector.io/flavor",
    ] {
        let mut annotated = sts.clone();
        annotate(&mut annotated, key, &long);
        let denial = denied(&annotated, &svc, None);
        assert!(denial.contains("(100000 bytes)"), "{key}: {denial:.300}");
    }

    let mut service = sts.clone();
    service.spec.as_mut().unwrap().service_name = Some(long);
    let denial = denied(&service, &svc, None);
    assert!(denial.contains("cannot name a Service"), "{denial:.300}");
}

/// `sts` injected as the webhook would, with the status annotation it records.
fn injected(sts: &StatefulSet, svc: &Service) -> StatefulSet {
    let settings = settings();
    let patch = mutate(sts, &ctx(Some(svc), None, &settings)).expect("resolvable");
    let value = common::apply(&serde_json::to_value(sts).unwrap(), &patch);
    serde_json::from_value(value).unwrap()
}

#[test]
fn changing_the_flavor_after_injection_is_denied_and_the_status_stays_true() {
    let (sts, svc) = etcd();
    let stored = injected(&sts, &svc);
    let mut changed = stored.clone();
    annotate(&mut changed, "raft-injector.io/flavor", "generic");
    let denial = denied(&changed, &svc, Some(&stored));
    assert!(
        denial.contains("was injected for \"etcd\"") && denial.contains("set the annotation back"),
        "{denial}"
    );
    let settings = settings();
    assert!(
        mutate(&changed, &ctx(Some(&svc), Some(&stored), &settings)).is_err(),
        "no patch rewrites the status for the new flavor"
    );
    // Back to the recorded flavor: allowed, quiet, and nothing to patch.
    let verdict = check(&stored, Some(&svc), Some(&stored));
    assert!(
        verdict.is_allowed() && verdict.warnings.is_empty(),
        "{verdict:?}"
    );
    let patch = mutate(&stored, &ctx(Some(&svc), Some(&stored), &settings)).unwrap();
    assert!(patch.0.is_empty(), "{patch:?}");
}

#[test]
fn an_injected_env_var_changed_later_is_warned_about() {
    let (sts, svc) = etcd();
    let mut stored = injected(&sts, &svc);
    // What `kubectl set env statefulset/etcd RAFT_PEERS=...` does to the template.
    let container = common::first_container(&mut stored);
    let peers = container
        .env
        .as_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e.name == "RAFT_PEERS")
        .unwrap();
    peers.value = Some("elsewhere:2380".to_owned());
    let verdict = check(&stored, Some(&svc), Some(&stored));
    assert!(verdict.is_allowed(), "{:?}", verdict.denial());
    assert_eq!(verdict.warnings.len(), 1, "{:?}", verdict.warnings);
    assert!(
        verdict.warnings[0].contains("has env RAFT_PEERS = \"elsewhere:2380\", not the \"etcd-0."),
        "{}",
        verdict.warnings[0]
    );
}

#[test]
fn a_repeated_env_var_is_warned_about_once() {
    let (mut sts, svc) = etcd();
    let container = common::first_container(&mut sts);
    let env = container.env.get_or_insert_with(Vec::new);
    for _ in 0..10_000 {
        env.push(serde_json::from_value(json!({"name": "RAFT_PORT", "value": "7000"})).unwrap());
    }
    let verdict = check(&sts, Some(&svc), None);
    let about_env: Vec<_> = verdict
        .warnings
        .iter()
        .filter(|w| w.contains("RAFT_PORT"))
        .collect();
    assert_eq!(
        about_env.len(),
        1,
        "{:?}",
        &about_env[..about_env.len().min(2)]
    );
}

fn scale_review(old: i64, new: i64) -> Value {
    let mut review: Value =
        serde_json::from_str(&common::read("tests/data/scale-3-to-5.json")).unwrap();
    review["request"]["oldObject"]["spec"]["replicas"] = json!(old);
    review["request"]["object"]["spec"]["replicas"] = json!(new);
    review
}

fn create_review(replicas: i64) -> Value {
    let mut review: Value =
        serde_json::from_str(&common::read("tests/data/create-etcd.json")).unwrap();
    review["request"]["object"]["spec"]["replicas"] = json!(replicas);
    review
}

#[tokio::test]
async fn through_the_router_every_answer_stays_small() {
    let cluster = lookup(&["examples/etcd.yaml"]);
    for replicas in [2_147_483_647, 99_999, 100, -1, -2_147_483_648] {
        let review = create_review(replicas);
        for path in ["/mutate", "/validate"] {
            let (status, body) = common::post(app(cluster.clone()), path, review.to_string()).await;
            assert_eq!(status, 200);
            let size = body.to_string().len();
            assert!(size < 64 * 1024, "{path} {replicas}: {size} bytes");
            let response = &body["response"];
            match path {
                "/validate" => {
                    rejects(response);
                }
                _ => assert!(accepts(response).is_empty() && patch_of(response).0.is_empty()),
            }
        }
        let response = respond(
            app(cluster.clone()),
            "/validate",
            &scale_review(3, replicas),
        )
        .await;
        assert!(rejects(&response).len() < SMALL);
    }
    // A replica count that is not an int32 at all is a schema error, denied in one line.
    let response = respond(app(cluster.clone()), "/validate", &create_review(1 << 40)).await;
    assert!(rejects(&response).len() < SMALL);
}
