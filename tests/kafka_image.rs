//! The Kafka image the local cluster runs under the official name (`run.sh kafka`, #25's
//! first stage): laid out as `apache/kafka` is, configured the same way (the `KAFKA_*` env
//! vars and `CLUSTER_ID`, read by Kafka's own `KafkaDockerWrapper`), and judged only with
//! the tools in its `/opt/kafka/bin`, run inside the pod: a single combined broker and
//! controller starts, a topic is created, a message produced with `acks=all` is consumed,
//! and the metadata quorum and its features are described.

mod common;

use common::controlplane::{control_plane, get, namespace, run, ControlPlane};
use common::node::{report, wait_ready};

const IMAGE: &str = "docker.io/apache/kafka:4.4.0";

/// A tool of the image, run in the pod: (succeeded, stdout, stderr).
fn tool(
    plane: &ControlPlane,
    ns: &str,
    stdin: Option<&str>,
    command: &[&str],
) -> (bool, String, String) {
    let mut args = vec!["exec", "-n", ns, "kafka-0"];
    if stdin.is_some() {
        args.push("-i");
    }
    args.push("--");
    args.extend_from_slice(command);
    run(plane, &args, stdin)
}

#[test]
fn the_image_runs_kafka_and_its_own_tools_as_the_official_one_does() {
    let plane = control_plane();
    assert_eq!(common::node::load_example_image(plane, "kafka"), IMAGE);
    // Not opted in: this is the image alone, as a user would run the official one.
    let ns = namespace(plane, "kafka-image", false);
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: kafka-0
spec:
  containers:
    - name: kafka
      image: {IMAGE}
      imagePullPolicy: IfNotPresent
      env:
        - {{name: CLUSTER_ID, value: 4L6g3nShT-eMCtK--X86sw}}
        - {{name: KAFKA_NODE_ID, value: "1"}}
        - {{name: KAFKA_PROCESS_ROLES, value: "broker,controller"}}
        - {{name: KAFKA_LISTENERS, value: "PLAINTEXT://:9092,CONTROLLER://:9093"}}
        - {{name: KAFKA_ADVERTISED_LISTENERS, value: "PLAINTEXT://localhost:9092"}}
        - {{name: KAFKA_CONTROLLER_LISTENER_NAMES, value: CONTROLLER}}
        - {{name: KAFKA_LISTENER_SECURITY_PROTOCOL_MAP, value: "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"}}
        - {{name: KAFKA_CONTROLLER_QUORUM_VOTERS, value: "1@localhost:9093"}}
        - {{name: KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR, value: "1"}}
      readinessProbe:
        tcpSocket: {{port: 9092}}
        periodSeconds: 2
      resources:
        limits: {{memory: 768Mi}}
"#
    );
    let (ok, _, stderr) = run(plane, &["apply", "-n", &ns, "-f", "-"], Some(&manifest));
    assert!(ok, "{stderr}");
    wait_ready(plane, &ns, &["kafka-0"]);

    let bootstrap = ["--bootstrap-server", "localhost:9092"];
    let (ok, out, err) = tool(
        plane,
        &ns,
        None,
        &[
            "/opt/kafka/bin/kafka-topics.sh",
            bootstrap[0],
            bootstrap[1],
            "--create",
            "--topic",
            "greetings",
        ],
    );
    assert!(
        ok,
        "kafka-topics.sh --create: {out}{err}\n{}",
        report(plane, &ns)
    );
    let (ok, out, err) = tool(
        plane,
        &ns,
        Some("hello from the image\n"),
        &[
            "/opt/kafka/bin/kafka-console-producer.sh",
            bootstrap[0],
            bootstrap[1],
            "--topic",
            "greetings",
            "--producer-property",
            "acks=all",
        ],
    );
    assert!(ok, "kafka-console-producer.sh: {out}{err}");
    let (ok, out, err) = tool(
        plane,
        &ns,
        None,
        &[
            "/opt/kafka/bin/kafka-console-consumer.sh",
            bootstrap[0],
            bootstrap[1],
            "--topic",
            "greetings",
            "--from-beginning",
            "--max-messages",
            "1",
            "--timeout-ms",
            "30000",
        ],
    );
    assert!(
        ok && out.trim() == "hello from the image",
        "kafka-console-consumer.sh: {out}{err}"
    );
    let (ok, out, err) = tool(
        plane,
        &ns,
        None,
        &[
            "/opt/kafka/bin/kafka-metadata-quorum.sh",
            bootstrap[0],
            bootstrap[1],
            "describe",
            "--status",
        ],
    );
    assert!(
        ok && out.contains("LeaderId:") && out.contains("CurrentVoters:"),
        "kafka-metadata-quorum.sh describe --status: {out}{err}"
    );
    let (ok, features, err) = tool(
        plane,
        &ns,
        None,
        &[
            "/opt/kafka/bin/kafka-features.sh",
            bootstrap[0],
            bootstrap[1],
            "describe",
        ],
    );
    assert!(
        ok && features.contains("Feature: metadata.version"),
        "kafka-features.sh describe: {features}{err}"
    );
    let pod = get(plane, &ns, "pod/kafka-0").expect("the pod");
    assert_eq!(pod["spec"]["containers"][0]["image"], IMAGE);
    eprintln!("kafka image: quorum\n{out}features\n{features}");
    let (ok, _, stderr) = run(plane, &["delete", "namespace", &ns, "--wait=false"], None);
    assert!(ok, "{stderr}");
}
