//! The member lifecycle on real etcd (SPEC §5), driven by the StatefulSet the webhook
//! injected for `examples/etcd.yaml` and served by the real kube-apiserver.
//!
//! `tests/node_e2e.rs` runs the main path (bootstrap, 3→5→3, a restart) on real pods. This
//! test runs the helper by hand around real etcd processes, which lets it also do what is
//! awkward with pods: time each leave, cut the API server off in the middle of a leave,
//! repeat a leave that already happened, and bring removed members back on their old data.
//!
//! Each member runs in its own network namespace on a private bridge, with an
//! `/etc/hosts` that resolves the injected member names, so etcd gets exactly the
//! injected env: `0.0.0.0` listeners, `*.etcd.<ns>.svc.cluster.local` peer URLs. The one
//! change is `ETCD_DATA_DIR`, the user's own setting, pointed at a directory per member.
//! The helper runs as the pod would: `member join` before etcd, `member exec -- etcd` as
//! the entrypoint, `member leave` as the preStop hook with the `etcd` ServiceAccount's
//! token, bound to the shipped `raft-injector-member` ClusterRole.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::controlplane::{
    base64, eventually, file, get, namespace, run, with_webhook, ControlPlane,
};
use raft_injector::member::etcd::{Gateway, Member};
use serde_json::{json, Value};

const MEMBERS: usize = 5;

/// A bridge in this namespace and one network namespace per member.
struct Net {
    tag: String,
    subnet: String,
    bridge: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    fn new(hosts: &[String]) -> Net {
        let pid = std::process::id();
        let tag = format!("ri{}", pid % 100_000);
        let net = Net {
            subnet: format!("10.213.{}", 20 + pid % 200),
            bridge: format!("{tag}br"),
            tag,
        };
        net.teardown();
        ip(&["link", "add", &net.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", net.subnet),
            "dev",
            &net.bridge,
        ]);
        ip(&["link", "set", &net.bridge, "up"]);
        let mut hosts_file = String::from("127.0.0.1 localhost\n");
        for (i, host) in hosts.iter().enumerate() {
            hosts_file.push_str(&format!("{} {host}\n", net.member_ip(i)));
        }
        for i in 0..hosts.len() {
            let (ns, outside, inside) = (
                net.netns(i),
                format!("{}h{i}", net.tag),
                format!("{}n{i}", net.tag),
            );
            ip(&["netns", "add", &ns]);
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ]);
            ip(&["link", "set", &inside, "netns", &ns]);
            ip(&["link", "set", &outside, "master", &net.bridge, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", net.member_ip(i)),
                "dev",
                &inside,
            ]);
            ip(&["-n", &ns, "link", "set", &inside, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            // `ip netns exec` bind-mounts this over /etc/hosts inside the namespace.
            let dir = PathBuf::from("/etc/netns").join(&ns);
            std::fs::create_dir_all(&dir).expect("/etc/netns is writable (tests run as root)");
            std::fs::write(dir.join("hosts"), &hosts_file).expect("hosts file");
        }
        net
    }

    fn netns(&self, i: usize) -> String {
        format!("{}m{i}", self.tag)
    }

    fn member_ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, 10 + i)
    }

    fn gateway_ip(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// `program args` inside member `i`'s namespace with exactly `env`.
    fn command(
        &self,
        i: usize,
        env: &BTreeMap<String, String>,
        program: &Path,
        args: &[String],
    ) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns(i), "env", "-i"]);
        command.args(env.iter().map(|(k, v)| format!("{k}={v}")));
        command.arg(program).args(args);
        command
    }

    fn teardown(&self) {
        for i in 0..MEMBERS {
            let _ = Command::new("ip")
                .args(["link", "del", &format!("{}h{i}", self.tag)])
                .output();
            let _ = Command::new("ip")
                .args(["netns", "del", &self.netns(i)])
                .output();
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(self.netns(i)));
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Forwards the bridge address to the API server (on the local node's address), as a
/// cluster's Service IP would.
fn forward_api(listen: &str, api: (String, u16)) -> u16 {
    let listener = std::net::TcpListener::bind(format!("{listen}:0")).expect("bind on the bridge");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for inbound in listener.incoming().flatten() {
            let Ok(outbound) = std::net::TcpStream::connect((api.0.as_str(), api.1)) else {
                continue;
            };
            for (mut from, mut to) in [
                (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                (outbound, inbound),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    port
}

/// Expands `$(VAR)` the way kubelet does: only names defined earlier in the list.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) if env.contains_key(&after[..end]) => {
                out.push_str(&env[&after[..end]]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("$(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The env a container of the injected template gets in pod `ordinal`.
fn pod_env(
    container: &Value,
    namespace: &str,
    ordinal: usize,
    data_dir: &Path,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().expect("env") {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = match var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            Some("metadata.name") => format!("etcd-{ordinal}"),
            Some("metadata.namespace") => namespace.to_owned(),
            Some("metadata.labels['apps.kubernetes.io/pod-index']") => ordinal.to_string(),
            Some(other) => panic!("unexpected downward API field {other}"),
            // The user's setting, moved to this member's own directory.
            None if name == "ETCD_DATA_DIR" => data_dir.display().to_string(),
            None => expand(var["value"].as_str().unwrap_or_default(), &env),
        };
        env.insert(name, value);
    }
    env.insert("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into());
    env.insert("RUST_LOG".into(), "info".into());
    env
}

struct Cluster {
    plane: &'static ControlPlane,
    net: Net,
    namespace: String,
    template: Value,
    helper: PathBuf,
    etcd: PathBuf,
    work: tempfile::TempDir,
    kubeconfig: PathBuf,
    members: Vec<Option<Child>>,
    gateway: Gateway,
    runtime: tokio::runtime::Runtime,
}

impl Cluster {
    fn data_dir(&self, i: usize) -> PathBuf {
        self.work.path().join(format!("data-{i}"))
    }

    /// The pod's emptyDir for the helper.
    fn helper_dir(&self, i: usize) -> PathBuf {
        let dir = self.work.path().join(format!("helper-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn container(&self, name: &str) -> &Value {
        let spec = &self.template["spec"];
        spec["initContainers"]
            .as_array()
            .into_iter()
            .chain(spec["containers"].as_array())
            .flatten()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("container {name} in the injected template"))
    }

    /// Maps the template's paths to this machine's: the helper binary and the etcd binary.
    fn local_command(&self, command: &Value) -> (PathBuf, Vec<String>) {
        let mut words: Vec<String> = command
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            words[0], "/raft-injector/raft-injector",
            "the injected command runs the helper"
        );
        words.remove(0);
        if let Some(etcd) = words.iter().position(|w| w == "/usr/local/bin/etcd") {
            words[etcd] = self.etcd.display().to_string();
            words.insert(etcd + 1, "etcd".to_owned());
        }
        (self.helper.clone(), words)
    }

    fn env(&self, container: &str, i: usize) -> BTreeMap<String, String> {
        let mut env = pod_env(
            self.container(container),
            &self.namespace,
            i,
            &self.data_dir(i),
        );
        env.insert(
            "RAFT_INJECTOR_HELPER_DIR".into(),
            self.helper_dir(i).display().to_string(),
        );
        env
    }

    fn join(&self, i: usize) -> Output {
        self.join_with(i, |_| {})
    }

    /// `join` with the container's env changed by `edit`.
    fn join_with(&self, i: usize, edit: impl FnOnce(&mut BTreeMap<String, String>)) -> Output {
        let container = self.container("raft-injector-join");
        let (program, args) = self.local_command(&container["command"]);
        let mut env = self.env("raft-injector-join", i);
        // The pod's credentials, as the ServiceAccount token gives them in a pod: the join
        // reads and writes the record that the cluster formed.
        env.insert("KUBECONFIG".into(), self.kubeconfig.display().to_string());
        edit(&mut env);
        self.net.command(i, &env, &program, &args).output().unwrap()
    }

    fn ids(&self) -> BTreeMap<String, u64> {
        self.members().into_iter().map(|m| (m.name, m.id)).collect()
    }

    fn start(&mut self, i: usize) {
        let (program, args) = self.local_command(&self.container("etcd")["command"]);
        let log = std::fs::File::create(self.work.path().join(format!("etcd-{i}.log"))).unwrap();
        let mut env = self.env("etcd", i);
        if i == 0 {
            // etcd refuses an add while another added member has not started, except when
            // two adds reach two members in the same instant. Without that check etcd-0 lets
            // step 2 stage that race with one plain member-add call.
            env.insert("ETCD_STRICT_RECONFIG_CHECK".into(), "false".into());
        }
        let child = self
            .net
            .command(i, &env, &program, &args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.members[i] = Some(child);
    }

    fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Runs the preStop hook of pod `i` with the pod's credentials; returns its output and duration.
    fn leave(&self, i: usize, kubeconfig: &Path) -> (Output, Duration) {
        let etcd = self.container("etcd");
        let hook = &etcd["lifecycle"]["preStop"]["exec"]["command"];
        let (program, args) = self.local_command(hook);
        let mut env = self.env("etcd", i);
        env.insert("KUBECONFIG".into(), kubeconfig.display().to_string());
        let started = Instant::now();
        let out = self.net.command(i, &env, &program, &args).output().unwrap();
        (out, started.elapsed())
    }

    fn url(&self, i: usize) -> String {
        format!("http://{}:2379", self.net.member_ip(i))
    }

    fn members(&self) -> Vec<Member> {
        self.members_quietly()
            .expect("a running member answers its member list")
    }

    fn started_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.members().into_iter().map(|m| m.name).collect();
        names.sort();
        names
    }

    /// Waits until exactly `names` are members and every one of them serves.
    fn wait_for_members(&self, names: &[&str]) {
        let wanted: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let ready = eventually(90, || {
            let list = self.members_quietly()?;
            let mut got: Vec<String> = list.iter().map(|m| m.name.clone()).collect();
            got.sort();
            let healthy = names.iter().all(|n| {
                let i: usize = n.trim_start_matches("etcd-").parse().unwrap();
                self.runtime.block_on(self.gateway.is_healthy(&self.url(i)))
            });
            (got == wanted && healthy).then_some(())
        });
        assert!(
            ready.is_some(),
            "members never became {wanted:?}; have {:?}",
            self.members_quietly()
        );
    }

    fn members_quietly(&self) -> Option<Vec<Member>> {
        let urls: Vec<String> = (0..MEMBERS)
            .filter(|i| self.members[*i].is_some())
            .map(|i| self.url(i))
            .collect();
        self.runtime.block_on(async {
            for url in &urls {
                if let Ok(list) = self.gateway.member_list(url, true).await {
                    return Some(list);
                }
            }
            None
        })
    }

    /// POSTs `body` to member `i`'s JSON gateway at `path`.
    fn kv(&self, i: usize, path: &str, body: Value) -> Value {
        let out = Command::new("curl")
            .args([
                "-sf",
                "--max-time",
                "5",
                "-X",
                "POST",
                "-d",
                &body.to_string(),
            ])
            .arg(format!("{}{path}", self.url(i)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{path} via member {i}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn put(&self, i: usize, key: &str, value: &str) {
        let body = json!({"key": base64(key.as_bytes()), "value": base64(value.as_bytes())});
        self.kv(i, "/v3/kv/put", body);
    }

    /// How many `key-N` keys member `i` serves (a linearizable read).
    fn read_all(&self, i: usize) -> usize {
        let body =
            json!({"key": base64(b"key-"), "range_end": base64(b"key."), "count_only": true});
        let value = self.kv(i, "/v3/kv/range", body);
        value["count"].as_str().unwrap_or("0").parse().unwrap()
    }

    fn scale(&self, replicas: u32) {
        let (ok, _, stderr) = run(
            self.plane,
            &[
                "scale",
                "-n",
                &self.namespace,
                "statefulset/etcd",
                &format!("--replicas={replicas}"),
            ],
            None,
        );
        assert!(ok, "kubectl scale --replicas={replicas}: {stderr}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..MEMBERS {
            self.stop(i);
        }
    }
}

fn succeeded(what: &str, out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{what} failed: {stderr}");
    stderr
}

fn setup() -> Cluster {
    let plane = with_webhook("members");
    let ns = namespace(plane, "members", true);
    let (ok, _, stderr) = run(
        plane,
        &["apply", "-f", &file("manifests/base/rbac.yaml")],
        None,
    );
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(
        plane,
        &["apply", "-n", &ns, "-f", &file("examples/etcd.yaml")],
        None,
    );
    assert!(ok, "{stderr}");
    let sts = get(plane, &ns, "statefulset/etcd").expect("the StatefulSet is stored");
    let template = sts["spec"]["template"].clone();
    assert!(
        sts["metadata"]["annotations"]["raft-injector.io/status"].is_string(),
        "injected by the webhook"
    );

    let hosts: Vec<String> = (0..MEMBERS)
        .map(|i| format!("etcd-{i}.etcd.{ns}.svc.cluster.local"))
        .collect();
    let net = Net::new(&hosts);

    // The pod's credentials: a token of the example's ServiceAccount, which the example
    // binds to the shipped raft-injector-member ClusterRole.
    let (ok, token, stderr) = run(
        plane,
        &["create", "token", "etcd", "-n", &ns, "--duration=1h"],
        None,
    );
    assert!(ok, "{stderr}");
    let ports = std::fs::read_to_string(plane.dir.join("ports.env")).unwrap();
    let setting = |key: &str| {
        ports
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let api_port: u16 = setting("APISERVER_PORT")
        .and_then(|p| p.parse().ok())
        .expect("API server port");
    let api_host = setting("APISERVER_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
    let forwarded = forward_api(&net.gateway_ip(), (api_host, api_port));
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = work.path().join("pod.kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{}:{forwarded}\n    certificate-authority: {}\n    tls-server-name: localhost\nusers:\n- name: pod\n  user:\n    token: {}\ncontexts:\n- name: c\n  context: {{cluster: c, user: pod}}\ncurrent-context: c\n",
            net.gateway_ip(),
            plane.dir.join("pki/ca.crt").display(),
            token.trim()
        ),
    )
    .unwrap();

    let etcd = PathBuf::from(
        String::from_utf8(
            Command::new(common::root().join("tests/controlplane/run.sh"))
                .arg("build")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim(),
    );
    Cluster {
        plane,
        net,
        namespace: ns,
        template,
        helper: PathBuf::from(env!("CARGO_BIN_EXE_raft-injector")),
        etcd,
        work,
        kubeconfig,
        members: (0..MEMBERS).map(|_| None).collect(),
        gateway: Gateway::default(),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    }
}

#[test]
fn member_lifecycle_on_real_etcd() {
    let mut c = setup();
    let mut report = Vec::new();

    // 1. Three members bootstrap from the injected configuration alone.
    for i in 0..3 {
        let log = succeeded("join of a bootstrap member", &c.join(i));
        assert!(
            !c.helper_dir(i).join("etcd-join.env").exists(),
            "bootstrap members need no join: {log}"
        );
        c.start(i);
    }
    c.wait_for_members(&["etcd-0", "etcd-1", "etcd-2"]);
    for n in 0..30 {
        c.put(n % 3, &format!("key-{n:03}"), "v");
    }
    for i in 0..3 {
        assert_eq!(c.read_all(i), 30, "member {i} serves every key");
    }
    report.push("bootstrap 3: 3 healthy members, 30 keys readable from each".to_owned());

    // 2. Scale 3 -> 5 with both new members joining at once (podManagementPolicy:
    //    Parallel). The race: etcd-4's join lists the members, adds itself and writes an
    //    initial cluster without etcd-3; only then does etcd-3's join (which had listed
    //    before etcd-4's add) add etcd-3. Staged here with the same member-add call the
    //    join makes, sent to etcd-0 (see `start`). etcd refuses to start with an initial cluster that differs from the
    //    running list ("member count is unequal"), so `member exec` must read it again:
    //    etcd-4 starts, and etcd-3's join then reuses its added member and follows.
    c.scale(5);
    let log = succeeded("join", &c.join(4));
    let written =
        std::fs::read_to_string(c.helper_dir(4).join("etcd-join.env")).expect("join settings");
    assert!(
        written.contains("ETCD_INITIAL_CLUSTER_STATE=existing")
            && written.contains("etcd-4=http://etcd-4.etcd.")
            && !written.contains("etcd-3="),
        "{written}\n{log}"
    );
    let peer_url = c.env("etcd", 3)["ETCD_INITIAL_ADVERTISE_PEER_URLS"].clone();
    let (added, _) = c
        .runtime
        .block_on(c.gateway.member_add(&c.url(0), &[peer_url]))
        .expect("etcd-3 added while etcd-4 has not started");
    c.start(4);
    let started = eventually(60, || {
        c.runtime
            .block_on(c.gateway.is_healthy(&c.url(4)))
            .then_some(())
    });
    let etcd4_log = std::fs::read_to_string(c.work.path().join("etcd-4.log")).unwrap_or_default();
    assert!(
        started.is_some(),
        "etcd-4 did not start with etcd-3 added beside it; its log:\n{etcd4_log}"
    );
    assert!(
        etcd4_log.contains("the member list changed since this member joined"),
        "exec read the member list again: {etcd4_log}"
    );
    let log = succeeded("join of the member added concurrently", &c.join(3));
    let settings =
        std::fs::read_to_string(c.helper_dir(3).join("etcd-join.env")).expect("join settings");
    assert!(
        settings.contains("etcd-3=http://etcd-3.etcd.") && settings.contains("etcd-4="),
        "{settings}\n{log}"
    );
    c.start(3);
    c.wait_for_members(&["etcd-0", "etcd-1", "etcd-2", "etcd-3", "etcd-4"]);
    assert_eq!(
        c.ids()["etcd-3"],
        added.id,
        "etcd-3's join reused the member added for it"
    );
    for i in 0..5 {
        assert_eq!(
            c.read_all(i),
            30,
            "member {i} has every key after the scale-up"
        );
    }
    report.push(
        "scale 3→5, both added at once: etcd-4 started from a re-read list (its join's file lacked \
         etcd-3), etcd-3 reused its member; 5 healthy members; 30 keys on each"
            .to_owned(),
    );

    // The joins recorded that the cluster formed, in a ConfigMap the StatefulSet owns.
    let record = get(c.plane, &c.namespace, "configmap/etcd-raft-formed")
        .expect("the joins recorded that the cluster formed");
    let sts = get(c.plane, &c.namespace, "statefulset/etcd").unwrap();
    assert_eq!(
        record["metadata"]["ownerReferences"][0]["uid"], sts["metadata"]["uid"],
        "owned by this StatefulSet: {record}"
    );
    let recorded = record["data"]["members"].as_str().unwrap_or_default();
    assert!(
        ["etcd-0", "etcd-1", "etcd-2"]
            .iter()
            .all(|m| recorded.contains(m)),
        "the bootstrap members are named: {record}"
    );

    // 3. Scale 5 -> 3: the preStop hook of ordinals 4 and 3 removes exactly those.
    c.scale(3);
    let mut leave_times = Vec::new();
    for i in [4, 3] {
        let (out, took) = c.leave(i, &c.kubeconfig.clone());
        let log = succeeded("leave", &out);
        assert!(
            log.contains(&format!("member=etcd-{i}"))
                && log.contains("member leave: removed from the Raft configuration"),
            "{log}"
        );
        leave_times.push((i, took));
        c.stop(i);
    }
    c.wait_for_members(&["etcd-0", "etcd-1", "etcd-2"]);
    for i in 0..3 {
        assert_eq!(c.read_all(i), 30);
    }
    report.push(format!(
        "scale 5→3: leave removed etcd-4 in {:?} and etcd-3 in {:?}; 3 healthy members; 30 keys",
        leave_times[0].1, leave_times[1].1
    ));

    // 4. A restart of ordinal 1 while replicas=3 keeps its membership.
    let (out, took) = c.leave(1, &c.kubeconfig.clone());
    let log = succeeded("leave on restart", &out);
    assert!(log.contains("keeping the membership"), "{log}");
    c.stop(1);
    assert_eq!(
        c.started_names(),
        ["etcd-0", "etcd-1", "etcd-2"],
        "etcd-1 is still a member while down"
    );
    let log = succeeded("join with data", &c.join(1));
    assert!(!c.helper_dir(1).join("etcd-join.env").exists(), "{log}");
    c.start(1);
    c.wait_for_members(&["etcd-0", "etcd-1", "etcd-2"]);
    c.put(1, "key-100", "after-restart");
    assert_eq!(c.read_all(0), 31);
    report.push(format!("restart of etcd-1 at replicas=3: leave kept the membership in {took:?}; it resumed from its data"));

    // 5. With the API unreachable, leave removes nothing, even for a pod beyond replicas.
    c.scale(1);
    let dead = c.work.path().join("dead.kubeconfig");
    let text = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let port_start =
        text.find(&format!("{}:", c.net.gateway_ip())).unwrap() + c.net.gateway_ip().len() + 1;
    let port_end = port_start + text[port_start..].find('\n').unwrap();
    std::fs::write(
        &dead,
        format!("{}1{}", &text[..port_start], &text[port_end..]),
    )
    .unwrap();
    let (out, took) = c.leave(2, &dead);
    let log = succeeded("leave without the API", &out);
    assert!(
        log.contains("cannot read the StatefulSet") && log.contains("keeping the membership"),
        "{log}"
    );
    assert_eq!(c.started_names(), ["etcd-0", "etcd-1", "etcd-2"]);
    c.scale(3);
    report.push(format!("leave with the API unreachable (replicas=1, ordinal 2): removed nothing, exited 0 in {took:?}"));

    // 6. Leave for a member that is already gone succeeds and changes nothing.
    let (out, took) = c.leave(4, &c.kubeconfig.clone());
    let log = succeeded("leave of a removed member", &out);
    assert!(
        log.contains("already out of the Raft configuration"),
        "{log}"
    );
    assert_eq!(c.started_names(), ["etcd-0", "etcd-1", "etcd-2"]);
    report.push(format!(
        "leave of the already-removed etcd-4 (its etcd stopped): exit 0, no change, {took:?}"
    ));

    // 7. Scale up again: the removed members come back with their old volumes; their
    //    stale data is set aside and they join cleanly.
    c.scale(5);
    for i in 3..5 {
        assert!(
            c.data_dir(i).join("member/wal").is_dir(),
            "etcd-{i} kept its old data"
        );
        let log = succeeded("join of a removed member", &c.join(i));
        assert!(log.contains("set aside"), "{log}");
        c.start(i);
    }
    c.wait_for_members(&["etcd-0", "etcd-1", "etcd-2", "etcd-3", "etcd-4"]);
    for i in 0..5 {
        assert_eq!(c.read_all(i), 31, "member {i}");
    }
    report.push("removed members returning with retained volumes: data set aside, rejoined; 5 healthy, 31 keys".to_owned());

    // 8. The join container knows where etcd keeps its data: admission read etcd's command
    //    line (RAFT_DATA_FROM), and the rest (ETCD_DATA_DIR here) is in the join container's
    //    own env, as in etcd's. Without that (an older injection, or etcd behind a shell) a
    //    member whose data is not where the helper guesses is kept, never replaced: a
    //    bootstrap member and a scaled-up one alike.
    let before = c.ids();
    let join_env = c.container("raft-injector-join")["env"].as_array().unwrap();
    assert!(
        join_env
            .iter()
            .any(|v| v["name"] == "RAFT_DATA_FROM" && v["value"] == "flags-then-env")
            && !join_env.iter().any(|v| v["name"] == "RAFT_DATA_DIR"),
        "the join container has RAFT_DATA_FROM, and no RAFT_DATA_DIR (etcd has no --data-dir flag)"
    );
    for i in [1, 3] {
        c.stop(i);
        // A new pod: its helper volume (an emptyDir) starts empty.
        let _ = std::fs::remove_file(c.helper_dir(i).join("etcd-join.env"));
        let hidden = c.work.path().join(format!("data-{i}-elsewhere"));
        std::fs::rename(c.data_dir(i), &hidden).unwrap();
        let out = c.join_with(i, |env| {
            env.remove("RAFT_DATA_FROM");
        });
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success() && log.contains("keeping the member rather than replacing it"),
            "join of etcd-{i} without a certain data directory must keep the member: {log}"
        );
        assert_eq!(c.ids(), before, "no member was removed or added (etcd-{i})");
        std::fs::rename(&hidden, c.data_dir(i)).unwrap();
        let log = succeeded("join with data", &c.join(i));
        assert!(!c.helper_dir(i).join("etcd-join.env").exists(), "{log}");
        c.start(i);
        c.wait_for_members(&["etcd-0", "etcd-1", "etcd-2", "etcd-3", "etcd-4"]);
    }
    assert_eq!(
        c.ids(),
        before,
        "etcd-1 and etcd-3 resumed under their own ids"
    );
    report.push("data directory not certain and not found (bootstrap etcd-1, scaled-up etcd-3): join kept the member (exit 1, Event); member ids unchanged".to_owned());

    // 9. The whole cluster down, then etcd-1's volume lost: with no quorum answering, a
    //    bootstrap member without data does not start a new cluster under its old name
    //    while a member restarted from its data reports a formed cluster; once a quorum
    //    answers, it is replaced (certain: ETCD_DATA_DIR in its own env says where its data would be).
    for i in 0..5 {
        c.stop(i);
    }
    std::fs::remove_dir_all(c.data_dir(1)).unwrap();
    std::fs::create_dir_all(c.data_dir(1)).unwrap();
    c.start(0);
    let started = Instant::now();
    let out = c.join_with(1, |env| {
        env.insert("RAFT_INJECTOR_JOIN_TIMEOUT_SECONDS".into(), "12".into());
    });
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && log.contains("formed before"),
        "a member without data must wait for a formed cluster's quorum: {log}"
    );
    assert!(
        !c.data_dir(1).join("member").exists() && !c.helper_dir(1).join("etcd-join.env").exists(),
        "nothing was started or written for etcd-1: {log}"
    );
    let waited = started.elapsed();
    for i in 2..5 {
        c.start(i);
    }
    let log = succeeded("join after losing the volume", &c.join(1));
    assert!(log.contains("without data"), "{log}");
    c.start(1);
    c.wait_for_members(&["etcd-0", "etcd-1", "etcd-2", "etcd-3", "etcd-4"]);
    let after = c.ids();
    for (name, id) in &before {
        if name == "etcd-1" {
            assert_ne!(after[name], *id, "etcd-1 was replaced by a new member");
        } else {
            assert_eq!(after[name], *id, "{name} kept its id");
        }
    }
    for i in 0..5 {
        assert_eq!(c.read_all(i), 31, "member {i}");
    }
    report.push(format!("cluster down, etcd-1's volume lost: join refused to bootstrap while etcd-0 (alone, from data) reported a formed cluster ({waited:?}); replaced once a quorum answered; 31 keys"));

    // 10. The whole cluster down and etcd-0's volume lost, and no other member running: the
    //     silence of a new cluster's first start. Without the record, the join took it for
    //     one after the cold-start wait and started etcd-0 under its old identity with an
    //     empty log. The record says the cluster formed: the join waits for a quorum and
    //     then replaces etcd-0 as a new member.
    let before = c.ids();
    for i in 0..5 {
        c.stop(i);
    }
    std::fs::remove_dir_all(c.data_dir(0)).unwrap();
    std::fs::create_dir_all(c.data_dir(0)).unwrap();
    let out = c.join_with(0, |env| {
        env.insert("RAFT_INJECTOR_JOIN_TIMEOUT_SECONDS".into(), "15".into());
        env.insert("RAFT_INJECTOR_COLD_START_WAIT_SECONDS".into(), "2".into());
    });
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success()
            && log.contains("etcd-raft-formed")
            && log.contains("volume is empty"),
        "with the cluster recorded as formed, a member without data must not bootstrap: {log}"
    );
    assert!(
        !c.data_dir(0).join("member").exists() && !c.helper_dir(0).join("etcd-join.env").exists(),
        "nothing was started or written for etcd-0: {log}"
    );
    for i in 1..5 {
        c.start(i);
    }
    let log = succeeded("join after losing the volume in a full outage", &c.join(0));
    assert!(log.contains("without data"), "{log}");
    c.start(0);
    c.wait_for_members(&["etcd-0", "etcd-1", "etcd-2", "etcd-3", "etcd-4"]);
    let after = c.ids();
    for (name, id) in &before {
        if name == "etcd-0" {
            assert_ne!(after[name], *id, "etcd-0 came back as a new member");
        } else {
            assert_eq!(after[name], *id, "{name} kept its id");
        }
    }
    assert_eq!(c.read_all(0), 31, "etcd-0 serves every key");
    report.push("full outage, etcd-0's volume lost, no member running: join refused to start a new cluster (the record says it formed); replaced with a new id once the others were back; 31 keys through etcd-0".to_owned());

    eprintln!(
        "\nmember lifecycle on real etcd:\n  {}",
        report.join("\n  ")
    );
}
