//! `raft-injector member exec -- COMMAND...`: the etcd flavor's entrypoint wrapper. Applies
//! the settings `member join` left in the helper volume (if any), starts COMMAND and stays
//! as the container's PID 1, forwarding every termination signal to it and exiting with
//! its status.
//!
//! It stays rather than replacing itself because of the preStop hook: etcd stops on its own
//! the moment it learns it was removed, and when a container's main process exits, every
//! process in it dies, `member leave` included — before it could tell (an Event) what it
//! did. So after COMMAND exits, the wrapper waits for a running `member leave` to finish
//! (at most `leave_wait`) before it exits.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};

use super::{MemberError, JOIN_ENV_FILE};

/// `KEY=VALUE` lines from the join file (etcd's, else kraft's); none when there is none.
pub fn join_settings(dir: &Path) -> Result<Vec<(String, String)>, MemberError> {
    let kraft = dir.join(super::kraft::SETTINGS_FILE);
    let path = if kraft.exists() {
        kraft
    } else {
        dir.join(JOIN_ENV_FILE)
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(MemberError::Io { path, source }),
    };
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

/// The signals a container runtime or an operator sends to stop or poke the main process.
const FORWARDED: [Signal; 6] = [
    Signal::TERM,
    Signal::INT,
    Signal::HUP,
    Signal::QUIT,
    Signal::USR1,
    Signal::USR2,
];

/// Runs `command` with `settings` (the join's, see [`join_settings`]), forwarding signals; returns its exit code (128 +
/// the signal when a signal ended it), once no `member leave` is running any more.
pub async fn run(
    settings: Vec<(String, String)>,
    command: &[OsString],
    leave_wait: Duration,
) -> Result<u8, MemberError> {
    use std::os::unix::process::ExitStatusExt;
    use tokio::signal::unix::{signal, SignalKind};

    let Some((program, args)) = command.split_first() else {
        return Err(MemberError::MissingEnv("COMMAND"));
    };
    for (key, value) in &settings {
        tracing::info!(%key, %value, "starting with the join's setting");
    }
    // Listen before the child exists, so no signal falls between.
    let mut listeners = Vec::new();
    for forwarded in FORWARDED {
        let listener =
            signal(SignalKind::from_raw(forwarded.as_raw())).map_err(|source| MemberError::Io {
                path: "signal handler".into(),
                source,
            })?;
        listeners.push((forwarded, listener));
    }
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(settings)
        .spawn()
        .map_err(|source| MemberError::Io {
            path: program.into(),
            source,
        })?;
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(Pid::from_raw);
    for (forwarded, mut listener) in listeners {
        tokio::spawn(async move {
            while listener.recv().await.is_some() {
                if let Some(pid) = pid {
                    // The child may be gone already; its exit is seen below.
                    let _ = kill_process(pid, forwarded);
                }
            }
        });
    }
    let status = child.wait().await.map_err(|source| MemberError::Io {
        path: program.into(),
        source,
    })?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    wait_for_leave(Path::new("/proc"), leave_wait).await;
    Ok(u8::try_from(code).unwrap_or(1))
}

/// Whether an argv (NUL-separated, as in `/proc/PID/cmdline`) is `raft-injector member leave`.
pub fn is_leave(cmdline: &[u8]) -> bool {
    let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    words.first().is_some_and(|w| w.ends_with(b"raft-injector"))
        && words
            .windows(2)
            .any(|pair| pair == [b"member".as_slice(), b"leave".as_slice()])
}

/// Waits until no process under `proc` is a `member leave`, for at most `limit`.
pub async fn wait_for_leave(proc: &Path, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut told = false;
    while leave_running(proc) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(?limit, "member leave still running; exiting anyway");
            return;
        }
        if !told {
            tracing::info!("the member stopped; waiting for member leave to finish");
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn leave_running(proc: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let is_pid = entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit());
        is_pid
            && std::fs::read(entry.path().join("cmdline"))
                .map(|cmdline| is_leave(&cmdline))
                .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leave_is_recognised_by_its_argv() {
        assert!(is_leave(b"/raft-injector/raft-injector\0member\0leave\0"));
        assert!(is_leave(
            b"/raft-injector/raft-injector\0--log-format\0json\0member\0leave\0"
        ));
        assert!(!is_leave(
            b"/raft-injector/raft-injector\0member\0exec\0--\0etcd\0"
        ));
        assert!(!is_leave(b"/usr/local/bin/etcd\0member\0leave\0"));
        assert!(!is_leave(b""));
    }

    // Paused time: the clock moves only when every task sleeps, so these are exact.
    #[tokio::test(start_paused = true)]
    async fn waiting_ends_when_no_leave_runs_and_at_the_limit_when_one_does() {
        let proc = tempfile::tempdir().unwrap();
        let started = tokio::time::Instant::now();
        wait_for_leave(proc.path(), Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "no leave: no wait");

        let pid = proc.path().join("4242");
        std::fs::create_dir(&pid).unwrap();
        std::fs::write(
            pid.join("cmdline"),
            b"/raft-injector/raft-injector\0member\0leave\0",
        )
        .unwrap();
        let started = tokio::time::Instant::now();
        wait_for_leave(proc.path(), Duration::from_secs(3)).await;
        assert!(
            started.elapsed() >= Duration::from_secs(3),
            "a leave running: waits to the limit"
        );

        std::fs::remove_dir_all(&pid).unwrap();
        let started = tokio::time::Instant::now();
        wait_for_leave(proc.path(), Duration::from_secs(3)).await;
        assert_eq!(started.elapsed(), Duration::ZERO, "the leave ended");
    }
}
