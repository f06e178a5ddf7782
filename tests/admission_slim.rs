//! The objects of an admission request are decoded into only the fields the rules read
//! (`object`: `src/admission/object.rs`, `oldObject`: `src/admission/old.rs`). Every way a
//! CREATE or UPDATE of the examples can look is decided the same — the same patch, the same
//! denial and warnings — with the whole objects and with the slim ones; a rule that starts
//! reading another field fails here.

mod common;

use common::{apply, services, settings, statefulset};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use raft_injector::admission::{object, old};
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

/// (what the rules decide with the whole objects, with the slim ones).
fn decided_both_ways(
    new: &StatefulSet,
    stored: Option<&StatefulSet>,
    service: &Service,
) -> (String, String) {
    let settings = settings();
    let slim_new = object::decode(&serde_json::to_string(new).unwrap())
        .expect("the slim decode reads a StatefulSet");
    let slim_old = stored.map(|stored| {
        old::decode(&serde_json::to_string(stored).unwrap())
            .expect("the slim decode reads a stored StatefulSet")
    });
    let decide = |new: &StatefulSet, old: Option<&StatefulSet>| {
        let ctx = context(service, old, &settings);
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
    (decide(new, stored), decide(&slim_new, slim_old.as_ref()))
}

/// `sts` changed as a JSON document.
fn edited(sts: &StatefulSet, edit: impl FnOnce(&mut serde_json::Value)) -> StatefulSet {
    let mut json = serde_json::to_value(sts).unwrap();
    edit(&mut json);
    serde_json::from_value(json).unwrap()
}

#[test]
fn every_admission_of_the_examples_is_decided_the_same_with_the_slim_objects() {
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
            (
                "re-apply of an object created stopped",
                stopped.clone(),
                stopped.clone(),
            ),
            ("flavor changed", flavor_changed.clone(), stored.clone()),
            (
                "injected before the sidecar existed",
                no_sidecar.clone(),
                no_sidecar.clone(),
            ),
        ] {
            let (full, slim) = decided_both_ways(&new, Some(&old), &service);
            assert_eq!(full, slim, "{example}: {what}");
            cases += 1;
        }

        // CREATEs: the manifest, and the shapes of it each rule looks at.
        let container = |json: &mut serde_json::Value| -> serde_json::Value {
            json["spec"]["template"]["spec"]["containers"][0].take()
        };
        let with_container = |edit: fn(&mut serde_json::Value)| {
            edited(&raw, |json| {
                let mut c = container(json);
                edit(&mut c);
                json["spec"]["template"]["spec"]["containers"][0] = c;
            })
        };
        for (what, new) in [
            ("the manifest", raw.clone()),
            ("injected already", stored.clone()),
            (
                "only others' annotations",
                edited(&raw, |json| {
                    json["metadata"]["annotations"] = serde_json::json!({"team": "storage"})
                }),
            ),
            (
                "no annotations at all",
                edited(&raw, |json| {
                    json["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .remove("annotations");
                }),
            ),
            (
                "a readiness probe, pods ordered",
                edited(&raw, |json| {
                    json["spec"]["podManagementPolicy"] = "OrderedReady".into();
                    json["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] =
                        serde_json::json!({"httpGet": {"path": "/health", "port": 2379}});
                }),
            ),
            (
                "the user's own preStop, env and mounts",
                with_container(|c| {
                    c["lifecycle"] =
                        serde_json::json!({"preStop": {"exec": {"command": ["sh", "-c", "true"]}}});
                    c["env"] = serde_json::json!([{"name": "RAFT_PORT", "value": "9"}, {"name": "X",
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]);
                    c["volumeMounts"] =
                        serde_json::json!([{"name": "data", "mountPath": "/data", "subPath": "d"}]);
                    c["securityContext"] =
                        serde_json::json!({"runAsUser": 1000, "capabilities": {"drop": ["ALL"]}});
                }),
            ),
            (
                "env from a ConfigMap and a Secret",
                with_container(|c| {
                    c["envFrom"] = serde_json::json!([{"configMapRef": {"name": "kv-env"}},
                        {"prefix": "S_", "secretRef": {"name": "kv-secret", "optional": true}}]);
                }),
            ),
            (
                "args without a command",
                with_container(|c| {
                    c.as_object_mut().unwrap().remove("command");
                    c["args"] = serde_json::json!(["--name", "x"]);
                }),
            ),
            (
                "a port named raft and no port annotation",
                edited(&raw, |json| {
                    json["metadata"]["annotations"]
                        .as_object_mut()
                        .map(|a| a.remove("raft-injector.io/port"));
                    json["metadata"]["annotations"]["raft-injector.io/flavor"] = "generic".into();
                    json["spec"]["template"]["spec"]["containers"][0]["ports"] = serde_json::json!([{"name": "raft", "containerPort": 9870, "protocol": "TCP"}]);
                }),
            ),
            (
                "claims deleted on scale-down",
                edited(&raw, |json| {
                    json["spec"]["persistentVolumeClaimRetentionPolicy"] =
                        serde_json::json!({"whenScaled": "Delete", "whenDeleted": "Retain"});
                }),
            ),
        ] {
            let (full, slim) = decided_both_ways(&new, None, &service);
            assert_eq!(full, slim, "{example}: CREATE of {what}");
            cases += 1;
        }
    }
    assert_eq!(cases, 63);
}

#[test]
fn the_slim_object_keeps_what_the_rules_read_and_skips_the_rest() {
    let json = r#"{"metadata":{"name":"etcd","labels":{"raft-injector.io/raft":"true","app":"etcd"},
        "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"big\":1}"},
        "managedFields":[{"manager":"kubectl","fieldsV1":{"f:spec":{}}}]},
        "spec":{"replicas":3,"serviceName":"etcd","selector":{"matchLabels":{"app":"etcd"}},
        "volumeClaimTemplates":[{"metadata":{"name":"data"}},{"metadata":{"name":"wal"}}],
        "template":{"metadata":{"labels":{"app":"etcd"},"annotations":{"x":"y"}},"spec":{
        "volumes":[{"name":"conf","configMap":{"name":"c"}},{"name":"raft-injector","emptyDir":{}}],
        "initContainers":[{"name":"raft-injector","image":"helper"},
          {"image":"etcd","name":"raft-injector-join","env":[{"name":"A","value":"1"}]}],
        "containers":[{"name":"etcd","image":"etcd","args":["x"],"resources":{"limits":{"cpu":"1"}},
          "readinessProbe":{"exec":{"command":["true"]}},"ports":[{"name":"peer","containerPort":2380,"protocol":"TCP"}]}]}}},
        "status":{"replicas":3}}"#;
    let sts = object::decode(json).unwrap();
    let labels = sts.metadata.labels.as_ref().unwrap();
    assert_eq!(labels.len(), 1, "only raft-injector's own labels");
    assert_eq!(
        sts.metadata.annotations.as_ref().map(|a| a.len()),
        Some(0),
        "others' annotations are dropped, the map stays (the patch adds into it)"
    );
    assert!(sts.metadata.managed_fields.is_none());
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("etcd"));
    assert_eq!(spec.volume_claim_templates.as_ref().map(Vec::len), Some(2));
    let pod = spec.template.spec.as_ref().unwrap();
    let volumes = pod.volumes.as_ref().unwrap();
    assert_eq!(
        volumes.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["raft-injector"],
        "of the volumes the helper's, by name"
    );
    assert!(volumes[0].empty_dir.is_none());
    let inits = pod.init_containers.as_ref().unwrap();
    assert_eq!(inits[0].image, None, "other init containers: the name only");
    assert_eq!(
        inits[1].image.as_deref(),
        Some("etcd"),
        "the join container whole"
    );
    assert_eq!(inits[1].env.as_ref().unwrap()[0].name, "A");
    let c = &pod.containers[0];
    assert!(c.readiness_probe.is_some() && c.args.is_some() && c.resources.is_none());
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 2380);
    assert!(sts.status.is_none());

    // Once members have run, the join container is frozen and only its name is read.
    let frozen = json.replacen(
        r#""annotations":{"#,
        r#""annotations":{"raft-injector.io/status":"{\"version\":\"0\",\"bootstrapSize\":3,\"flavor\":\"etcd\",\"env\":[],\"hash\":\"h\"}","#,
        1,
    );
    let sts = object::decode(&frozen).unwrap();
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let join = &pod.init_containers.as_ref().unwrap()[1];
    assert_eq!(
        (join.name.as_str(), join.image.as_deref()),
        ("raft-injector-join", None)
    );

    assert!(object::decode("[]").is_err());
    assert!(object::decode(r#"{"spec":{"replicas":"three"}}"#).is_err());
    assert!(
        object::decode(r#"{"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}"#).is_err(),
        "a container without a name"
    );
    assert_eq!(object::decode("{}").unwrap().spec, None);
}

#[test]
fn the_slim_stored_object_keeps_what_the_rules_read_and_refuses_what_is_not_an_object() {
    let json = r#"{"metadata":{"name":"etcd","annotations":{"raft-injector.io/status":"{}","a":"b"}},
        "spec":{"replicas":5,"serviceName":"etcd","template":{"spec":{"initContainers":[{"name":"raft-injector","image":"x"},{"name":"raft-injector-reconcile"}],"containers":[{"name":"etcd"}]}}}}"#;
    let sts = old::decode(json).unwrap();
    let annotations = sts.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        ["raft-injector.io/status"],
        "only raft-injector's own annotations"
    );
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
    assert_eq!(
        inits,
        ["raft-injector-reconcile"],
        "of the init containers only the sidecar, which the rules look for"
    );
    assert!(old::decode("[]").is_err());
    assert!(old::decode(r#"{"spec":{"replicas":"three"}}"#).is_err());
    assert_eq!(old::decode("{}").unwrap().spec, None);
}
