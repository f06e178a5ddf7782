//! The end-to-end harness: the local control plane from `tests/controlplane/run.sh`, the
//! real `raft-injector serve` as a local process, and the shipped webhook configurations
//! registered against it (same selectors and rules, `url` instead of `service`).

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::root;

/// The running control plane, shared by every test of one test binary.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

/// Starts the control plane once (or reuses the one `make test` started).
pub fn control_plane() -> &'static ControlPlane {
    static PLANE: OnceLock<ControlPlane> = OnceLock::new();
    PLANE.get_or_init(|| {
        let dir = std::env::var_os("RAFT_E2E_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target/e2e-controlplane"));
        let status = Command::new(root().join("tests/controlplane/run.sh"))
            .arg("up")
            .arg(&dir)
            .status()
            .expect("run.sh starts");
        assert!(
            status.success(),
            "the control plane did not start; see {}/logs",
            dir.display()
        );
        ControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            dir,
        }
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `raft-injector serve` process. It lives under a small shell that kills it when this
/// test process's end of the stdin pipe closes, so no webhook outlives the tests.
pub struct Webhook {
    pub port: u16,
    pub metrics_port: u16,
    pub certs: PathBuf,
    child: Child,
}

impl Webhook {
    pub fn start(plane: &ControlPlane, name: &str) -> Webhook {
        let certs = plane.dir.join(format!("webhook-{name}"));
        let out = Command::new(env!("CARGO_BIN_EXE_raft-injector"))
            .args(["certs", "--ip", "127.0.0.1", "--out"])
            .arg(&certs)
            .output()
            .expect("certs runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (port, metrics_port) = (free_port(), free_port());
        let log = std::fs::File::create(plane.dir.join(format!("logs/webhook-{name}.log")))
            .expect("log file");
        let child = Command::new("bash")
            .args([
                "-c",
                r#""$@" & pid=$!; read -r _; kill -TERM $pid; wait $pid"#,
                "webhook",
            ])
            .arg(env!("CARGO_BIN_EXE_raft-injector"))
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .arg("--tls-cert")
            .arg(certs.join("tls.crt"))
            .arg("--tls-key")
            .arg(certs.join("tls.key"))
            .args(["--helper-image", "registry.example/raft-injector:e2e"])
            .env("KUBECONFIG", &plane.kubeconfig)
            .env("RUST_LOG", "info,raft_injector=debug")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("webhook starts");
        let webhook = Webhook {
            port,
            metrics_port,
            certs,
            child,
        };
        webhook.wait_ready();
        webhook
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics_port);
        while Instant::now() < deadline {
            let ready = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "--max-time", "1", &url])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the webhook did not become ready on {url}");
    }

    /// PID of the `raft-injector serve` process (the wrapper shell's only child).
    pub fn server_pid(&self) -> u32 {
        let shell = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("the webhook process is gone (shell {shell} has no child)"))
    }

    /// Resident memory of the serve process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server_pid()))
            .expect("the webhook process is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS is reported")
    }

    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args([
                "-sf",
                &format!("http://127.0.0.1:{}/metrics", self.metrics_port),
            ])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the webhook with SIGTERM, waits for it to exit, and returns its exit status
    /// (the wrapper shell exits with the webhook's).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        self.child.wait().ok()
    }

    /// Registers the shipped webhook configurations, pointed at this process.
    pub fn register(&self, plane: &ControlPlane) {
        let ca = std::fs::read(self.certs.join("ca.crt")).expect("ca.crt");
        let bundle = base64(&ca);
        apply_shipped_webhooks(plane, |doc| {
            for hook in doc["webhooks"].as_array_mut().expect("webhooks") {
                let path = hook["clientConfig"]["service"]["path"]
                    .as_str()
                    .expect("a path")
                    .to_owned();
                hook["clientConfig"] = serde_json::json!({
                    "url": format!("https://127.0.0.1:{}{path}", self.port),
                    "caBundle": bundle,
                });
            }
        });
    }
}

/// Applies the shipped webhook configurations, each first changed by `edit`.
pub fn apply_shipped_webhooks(plane: &ControlPlane, mut edit: impl FnMut(&mut Value)) {
    let mut docs = super::yaml_docs("manifests/base/webhooks.yaml");
    docs.iter_mut().for_each(&mut edit);
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let out = kubectl(plane, &["apply", "-f", "-"], Some(&list.to_string()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The control plane with one webhook per test binary registered and taking effect.
static WEBHOOK: OnceLock<Webhook> = OnceLock::new();

/// The webhook [`with_webhook`] started.
pub fn webhook() -> &'static Webhook {
    WEBHOOK.get().expect("with_webhook was called first")
}

pub fn with_webhook(name: &str) -> &'static ControlPlane {
    let plane = control_plane();
    WEBHOOK.get_or_init(|| {
        let webhook = Webhook::start(plane, name);
        webhook.register(plane);
        // The API server picks up webhook configurations asynchronously: wait until an
        // even-replica Raft StatefulSet is denied in a dry run.
        let ns = namespace(plane, "warmup", true);
        let probe = super::read("examples/denied-even-replicas.yaml");
        let active = eventually(30, || {
            let (ok, _, stderr) = run(
                plane,
                &["apply", "--dry-run=server", "-n", &ns, "-f", "-"],
                Some(&probe),
            );
            (!ok && stderr.contains("validate.raft-injector.io")).then_some(())
        });
        assert!(
            active.is_some(),
            "the webhook configuration never took effect"
        );
        webhook
    });
    plane
}

/// Runs kubectl against the control plane, optionally feeding stdin.
pub fn kubectl(plane: &ControlPlane, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", &plane.kubeconfig)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).expect("stdin accepted");
    }
    child.wait_with_output().expect("kubectl finishes")
}

/// kubectl output as text: (success, stdout, stderr).
pub fn run(plane: &ControlPlane, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let out = kubectl(plane, args, stdin);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl get -o json`, or `None` when the object does not exist.
pub fn get(plane: &ControlPlane, namespace: &str, what: &str) -> Option<Value> {
    let (ok, stdout, _) = run(plane, &["get", "-n", namespace, what, "-o", "json"], None);
    ok.then(|| serde_json::from_str(&stdout).expect("kubectl prints JSON"))
}

/// Marks the namespaces [`namespace`] creates.
pub const TEST_NAMESPACE_LABEL: &str = "e2e.raft-injector.io/test";

/// Deletes the namespaces earlier test binaries left: on the real node their pods would run
/// (once the images are loaded) and take the machine's CPU from the tests that follow.
pub fn delete_earlier_test_namespaces(plane: &ControlPlane) {
    let selector = format!("{TEST_NAMESPACE_LABEL}=true");
    let (ok, _, stderr) = run(
        plane,
        &["delete", "namespace", "-l", &selector, "--wait=false"],
        None,
    );
    assert!(ok, "{stderr}");
}

/// Creates a namespace with a unique name, opted in or not.
pub fn namespace(plane: &ControlPlane, prefix: &str, opted_in: bool) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{prefix}-{}-{n}", std::process::id());
    let label = if opted_in { "enabled" } else { "disabled" };
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    raft-injector.io/injection: {label}\n    {TEST_NAMESPACE_LABEL}: \"true\"\n"
    );
    let (ok, _, stderr) = run(plane, &["apply", "-f", "-"], Some(&manifest));
    assert!(ok, "{stderr}");
    name
}

/// Polls `check` for up to `seconds`.
pub fn eventually<T>(seconds: u64, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A file under the repository root.
pub fn file(relative: &str) -> String {
    root().join(relative).display().to_string()
}

pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
