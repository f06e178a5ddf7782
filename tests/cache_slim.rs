//! The informer caches keep only what the rules read. Slimmed objects must give exactly the
//! decisions whole ones give, for every example and every scale step.

mod common;

use k8s_openapi::api::core::v1::Service;
use raft_injector::cluster::cache::{slim_service, slim_statefulset};
use raft_injector::policy::scale::validate_scale;
use raft_injector::policy::{mutate, validate, Context};

const EXAMPLES: &[&str] = &[
    "examples/etcd.yaml",
    "examples/ratis-app.yaml",
    "examples/denied-even-replicas.yaml",
    "examples/denied-not-headless.yaml",
    "examples/denied-selector-mismatch.yaml",
];

fn ctx<'a>(svc: &'a Service, settings: &'a raft_injector::policy::Settings) -> Context<'a> {
    Context {
        namespace: "default",
        service: Some(svc),
        old: None,
        settings,
        dry_run: false,
    }
}

#[test]
fn a_slim_service_gives_the_same_verdict_and_patch() {
    let settings = common::settings();
    for example in EXAMPLES {
        let sts = common::statefulset(example);
        for svc in common::services(example) {
            let mut slim = svc.clone();
            slim_service(&mut slim);
            assert_eq!(
                validate(&sts, &ctx(&svc, &settings)),
                validate(&sts, &ctx(&slim, &settings)),
                "{example}"
            );
            assert_eq!(
                mutate(&sts, &ctx(&svc, &settings)).ok(),
                mutate(&sts, &ctx(&slim, &settings)).ok(),
                "{example}"
            );
        }
    }
}

#[test]
fn a_slim_statefulset_gives_the_same_scale_decisions_and_is_small() {
    let settings = common::settings();
    let sts = common::statefulset("examples/etcd.yaml");
    let svc = common::services("examples/etcd.yaml").remove(0);
    let patch = mutate(&sts, &ctx(&svc, &settings)).unwrap();
    let injected: k8s_openapi::api::apps::v1::StatefulSet =
        serde_json::from_value(common::apply(&serde_json::to_value(&sts).unwrap(), &patch))
            .unwrap();
    let mut slim = injected.clone();
    slim_statefulset(&mut slim);
    let mut retained = injected.clone();
    if let Some(policy) = retained
        .spec
        .as_mut()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_mut())
    {
        policy.when_scaled = Some("Retain".to_owned());
    }
    let mut retained_slim = retained.clone();
    slim_statefulset(&mut retained_slim);
    for (old, new) in [(3, 5), (3, 4), (5, 1), (3, 0), (0, 3), (3, 101), (3, -1)] {
        for (whole, slim) in [(&injected, &slim), (&retained, &retained_slim)] {
            assert_eq!(
                validate_scale(whole, "default", old, new, &settings),
                validate_scale(slim, "default", old, new, &settings),
                "{old}→{new}"
            );
        }
    }
    // Stopping is denied with whenScaled: Delete and allowed with Retain, from the cache too.
    assert!(validate_scale(&slim, "default", 3, 0, &settings)
        .denial()
        .is_some());
    assert!(validate_scale(&retained_slim, "default", 3, 0, &settings).is_allowed());
    let whole = serde_json::to_vec(&injected).unwrap().len();
    let kept = serde_json::to_vec(&slim).unwrap().len();
    assert!(kept * 4 < whole, "slim {kept} bytes of {whole}");
    assert!(raft_injector::policy::names::is_raft_workload(
        &slim.metadata
    ));
}
