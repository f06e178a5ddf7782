//! Property-based fuzzing of the two ways input reaches raft-injector: AdmissionReview
//! bytes through the HTTP router, and YAML through the offline commands. Inputs start from
//! the real fixtures and are mutated at random places with random values (extreme numbers,
//! long strings, wrong types, deep nesting), so most cases get past parsing and exercise
//! the rules and the patch builder.
//!
//! `make test` runs a bounded number of cases; `make fuzz` runs many more
//! (`PROPTEST_CASES`). Properties: no panic, every answer is a well-formed HTTP response,
//! a 200 answer echoes the uid and is never much larger than the request, and every patch
//! applies to the object it was made for (the API server would reject one that does not).

mod common;

use std::sync::OnceLock;

use axum::http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

const FIXTURES: &[&str] = &[
    "create-etcd",
    "create-even-replicas",
    "scale-3-to-5",
    "scale-7-to-1",
    "create-deployment",
    "delete-etcd",
];

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&common::read(&format!("tests/data/{name}.json"))).unwrap()
}

/// Every JSON pointer in `value`, parents before children.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let token = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{token}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// Values chosen to break things: the ends of every integer type, huge and empty strings,
/// wrong types, deep nesting.
fn nasty_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(i64::from(i32::MAX)),
            Just(i64::from(i32::MIN)),
            Just(i64::MAX),
            Just(i64::MIN),
            Just(-1i64),
            Just(0i64),
            Just(99_999i64),
            -200i64..200,
        ]
        .prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z0-9.-]{0,70}".prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        (1usize..300_000).prop_map(|n| Value::from("x".repeat(n))),
        Just(Value::from("raft-injector.io/raft")),
        Just(Value::from("true")),
        Just(Value::from("etcd")),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z./-]{1,20}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One mutation: the place (an index into the pointer list) and what happens there.
#[derive(Clone, Debug)]
enum Mutation {
    Replace(usize, Value),
    Remove(usize),
    /// Nest the value at the place `depth` levels deep in arrays.
    Bury(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<usize>(), nasty_value()).prop_map(|(at, v)| Mutation::Replace(at, v)),
        2 => any::<usize>().prop_map(Mutation::Remove),
        1 => (any::<usize>(), 1usize..200).prop_map(|(at, d)| Mutation::Bury(at, d)),
    ]
}

fn apply_mutation(review: &mut Value, mutation: &Mutation) {
    let mut places = Vec::new();
    pointers(review, String::new(), &mut places);
    if places.len() < 2 {
        return; // an earlier mutation left nothing below the root
    }
    // Never replace the root itself, so most cases keep an AdmissionReview's shape.
    let pick = |at: usize| places[1 + at % (places.len() - 1)].clone();
    match mutation {
        Mutation::Replace(at, value) => {
            if let Some(slot) = review.pointer_mut(&pick(*at)) {
                *slot = value.clone();
            }
        }
        Mutation::Remove(at) => {
            let place = pick(*at);
            let (parent, key) = place.rsplit_once('/').unwrap_or(("", &place));
            match review.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.shift_remove(&key.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = key.parse::<usize>() {
                        if i < items.len() {
                            items.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
        Mutation::Bury(at, depth) => {
            if let Some(slot) = review.pointer_mut(&pick(*at)) {
                let mut value = slot.take();
                for _ in 0..*depth {
                    value = Value::Array(vec![value]);
                }
                *slot = value;
            }
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

fn cluster() -> raft_injector::cluster::documents::Documents {
    common::lookup(&[
        "examples/etcd.yaml",
        "examples/ratis-app.yaml",
        "examples/denied-even-replicas.yaml",
    ])
}

/// Sends `body` to both webhooks and checks every property; returns a failure message.
fn check_admission(body: Vec<u8>, sent: Option<&Value>) -> Result<(), TestCaseError> {
    for path in ["/mutate", "/validate"] {
        let (status, response) =
            runtime().block_on(common::post(common::app(cluster()), path, body.clone()));
        // The patch may carry user data (the etcd join container copies the target's env
        // and mounts), but nothing may be amplified beyond a small multiple of the request.
        let size = response.to_string().len();
        prop_assert!(
            size < 64 * 1024 + 4 * body.len(),
            "{path}: {size} byte answer to {} bytes",
            body.len()
        );
        if status != StatusCode::OK {
            prop_assert!(
                status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
                "{path}: unexpected status {status}: {response}"
            );
            continue;
        }
        let answer = &response["response"];
        prop_assert_eq!(&response["apiVersion"], "admission.k8s.io/v1");
        if let Some(sent) = sent {
            prop_assert_eq!(&answer["uid"], &sent["request"]["uid"]);
        }
        if answer["allowed"] == true && answer["patch"].is_string() {
            let patch = common::patch_of(answer);
            let object = sent
                .map(|s| s["request"]["object"].clone())
                .unwrap_or_default();
            let mut patched = object.clone();
            prop_assert!(
                json_patch::patch(&mut patched, &patch.0).is_ok(),
                "{path}: the patch does not apply: {patch:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn admission_reviews_mutated_at_random_places() {
    let fixtures: Vec<Value> = FIXTURES.iter().map(|f| fixture(f)).collect();
    let mut runner = TestRunner::new(Config {
        cases: cases(600),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..fixtures.len(), prop::collection::vec(mutation(), 1..6));
    runner
        .run(&strategy, |(which, mutations)| {
            let mut review = fixtures[which].clone();
            for m in &mutations {
                apply_mutation(&mut review, m);
            }
            let body = serde_json::to_vec(&review).unwrap();
            check_admission(body, Some(&review))
        })
        .unwrap();
}

#[test]
fn raw_bytes_and_truncated_reviews() {
    let whole = serde_json::to_vec(&fixture("create-etcd")).unwrap();
    let mut runner = TestRunner::new(Config {
        cases: cases(400),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..2048),
        (0..whole.len()).prop_map(move |cut| whole[..cut].to_vec()),
        (1usize..100_000).prop_map(|n| "[".repeat(n).into_bytes()),
    ];
    runner
        .run(&strategy, |body| check_admission(body, None))
        .unwrap();
}

#[test]
fn yaml_inputs_mutated_at_random_places() {
    let sources: Vec<String> = ["examples/etcd.yaml", "examples/ratis-app.yaml"]
        .iter()
        .map(|f| common::read(f))
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: cases(400),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0..sources.len(),
        prop::collection::vec((any::<usize>(), ".{0,12}", 0usize..8), 1..8),
    );
    runner
        .run(&strategy, |(which, edits)| {
            // Splice random text over random stretches of a real manifest.
            let mut text: Vec<char> = sources[which].chars().collect();
            for (at, insert, remove) in &edits {
                let at = at % (text.len() + 1);
                let end = (at + remove).min(text.len());
                text.splice(at..end, insert.chars());
            }
            let text: String = text.into_iter().collect();
            let input = raft_injector::offline::Input {
                name: "fuzz".to_owned(),
                text,
            };
            let namespace = raft_injector::offline::DefaultNamespace::Flag("default".into());
            for inject in [false, true] {
                if let Ok(report) = raft_injector::offline::run(
                    std::slice::from_ref(&input),
                    &common::settings(),
                    &namespace,
                    inject,
                ) {
                    prop_assert!(report.denials.iter().all(|d| d.len() < 64 * 1024));
                    prop_assert!(report.warnings.iter().all(|w| w.len() < 64 * 1024));
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn any_replica_change_gets_a_short_answer() {
    let sts = common::statefulset("examples/etcd.yaml");
    let settings = common::settings();
    let mut runner = TestRunner::new(Config {
        cases: cases(5000),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(any::<i32>(), any::<i32>()), |(old, new)| {
            let verdict =
                raft_injector::policy::scale::validate_scale(&sts, "default", old, new, &settings);
            let allowed = verdict.is_allowed();
            prop_assert!(verdict.denial().is_none_or(|d| d.len() < 2048));
            // Allowed only inside the bound, odd or zero, and at most two members a step.
            if allowed {
                prop_assert!((0..=99).contains(&new) && (new == 0 || new % 2 == 1));
                prop_assert!(old == 0 || new == 0 || (i64::from(old) - i64::from(new)).abs() <= 2);
            }
            Ok(())
        })
        .unwrap();
}
