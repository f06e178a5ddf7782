//! The stored object of an UPDATE is decoded into only the fields the rules read
//! (`src/admission/old.rs`). Every way an UPDATE of the examples can look is decided the
//! same — the same patch, the same denial and warnings — with the full stored object and
//! with the slim one; a rule that starts reading another field of `oldObject` fails here.

mod common;

use common::{apply, services, settings, statefulset};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use raft_injector::admission::old;
use raft_injector::policy::{mutate, validate, Context};

fn context<'a>(
    service: &'a Service,
    old: Option<&'a StatefulSet>,
    settings: &'a raft_injector::policy::Settings,
) -> Context<'a> {
    Context {
        namespace: "default",
        service: Some(service),
        old,
        settings,
        dry_run: false,
    }
}

fn injected(sts: &StatefulSet, service: &Service) -> StatefulSet {
    let settings = settings();
    let patch = mutate(sts, &context(service, None, &settings)).expect("resolvable");
    serde_json::from_value(apply(&serde_json::to_value(sts).unwrap(), &patch)).unwrap()
}

/// (what the rules decide with the full stored object, with the slim one).
fn decided_both_ways(
    new: &StatefulSet,
    stored: &StatefulSet,
    service: &Service,
) -> (String, String) {
    let settings = settings();
    let slim = old::decode(&serde_json::to_string(stored).unwrap())
        .expect("the slim decode reads a StatefulSet");
    let decide = |old: &StatefulSet| {
        let ctx = context(service, Some(old), &settings);
        let verdict = validate(new, &ctx);
        format!(
            "patch {:?}\ndenial {:?}\nwarnings {:?}",
            mutate(new, &ctx)
                .map(|p| serde_json::to_string(&p).unwrap())
                .map_err(|e| e.to_string()),
            verdict.denial(),
            verdict.warning_messages()
        )
    };
    (decide(stored), decide(&slim))
}

#[test]
fn every_update_of_the_examples_is_decided_the_same_with_the_slim_stored_object() {
    let mut cases = 0;
    for example in [
        "examples/etcd.yaml",
        "examples/ratis-app.yaml",
        "examples/ratis/kv.yaml",
    ] {
        let raw = statefulset(example);
        let service = services(example).remove(0);
        let stored = injected(&raw, &service);

        let scaled = |sts: &StatefulSet, replicas: i32| {
            let mut sts = sts.clone();
            sts.spec.as_mut().unwrap().replicas = Some(replicas);
            sts
        };
        let mut no_status = stored.clone();
        no_status
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove("raft-injector.io/status");
        let mut stopped_raw = scaled(&raw, 0);
        stopped_raw.metadata.name = raw.metadata.name.clone();
        let stopped = injected(&stopped_raw, &service);
        let mut flavor_changed = stored.clone();
        flavor_changed
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("raft-injector.io/flavor".to_owned(), "etcd".to_owned());
        let mut no_sidecar = stored.clone();
        if let Some(inits) = no_sidecar
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .init_containers
            .as_mut()
        {
            inits.retain(|c| c.name != "raft-injector-reconcile");
        }

        for (what, new, old) in [
            (
                "re-apply of the injected object",
                stored.clone(),
                stored.clone(),
            ),
            (
                "client-side apply of the manifest",
                raw.clone(),
                stored.clone(),
            ),
            ("scale 3 -> 5 by apply", scaled(&stored, 5), stored.clone()),
            ("scale to an even size", scaled(&stored, 4), stored.clone()),
            ("scale 5 -> 1", scaled(&stored, 1), scaled(&stored, 5)),
            (
                "server-side apply that drops the status",
                no_status.clone(),
                stored.clone(),
            ),
            ("stored before injection", raw.clone(), raw.clone()),
            (
                "created stopped, now started",
                scaled(&stopped_raw, 3),
                stopped.clone(),
            ),
            ("flavor changed", flavor_changed.clone(), stored.clone()),
            (
                "injected before the sidecar existed",
                no_sidecar.clone(),
                no_sidecar.clone(),
            ),
        ] {
            let (full, slim) = decided_both_ways(&new, &old, &service);
            assert_eq!(full, slim, "{example}: {what}");
            cases += 1;
        }
    }
    assert_eq!(cases, 30);
}

#[test]
fn the_slim_decode_keeps_what_the_rules_read_and_refuses_what_is_not_an_object() {
    let json = r#"{"metadata":{"name":"etcd","annotations":{"raft-injector.io/status":"{}","a":"b"}},
        "spec":{"replicas":5,"serviceName":"etcd","template":{"spec":{"initContainers":[{"name":"raft-injector","image":"x"},{"name":"raft-injector-reconcile"}],"containers":[{"name":"etcd"}]}}}}"#;
    let sts = old::decode(json).unwrap();
    assert_eq!(sts.metadata.annotations.as_ref().unwrap().len(), 2);
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(5));
    let inits: Vec<&str> = spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(inits, ["raft-injector", "raft-injector-reconcile"]);
    assert!(old::decode("[]").is_err());
    assert!(old::decode(r#"{"spec":{"replicas":"three"}}"#).is_err());
    assert_eq!(old::decode("{}").unwrap().spec, None);
}
