//! How `member exec` starts Kafka when the container runs the official image's own command
//! (`/etc/kafka/docker/run`).
//!
//! That script cannot start a controller of a dynamic quorum: it refuses
//! `KAFKA_ADVERTISED_LISTENERS` on a controller ("not supported on a KRaft controller"), and
//! the format it runs (`KafkaDockerWrapper setup`) fails without `controller.quorum.voters`
//! ("the Docker image continues to use static voters"), before it would notice that the
//! volume is formatted already. So the helper does the script's two steps itself: Kafka's
//! own `KafkaDockerWrapper setup` writes `/opt/kafka/config` from the `KAFKA_*` env vars
//! (and `/mnt/shared/config`), its format failure is accepted only when the join container
//! has formatted the volume, and `kafka-server-start.sh` runs with that configuration.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::join::read_meta;
use super::KraftEnv;
use crate::member::MemberError;

/// The official image's command.
pub const OFFICIAL_COMMAND: &str = crate::policy::flavor::kraft::DEFAULT_COMMAND;
const RUN_CLASS: &str = "/opt/kafka/bin/kafka-run-class.sh";
const SERVER_START: &str = "/opt/kafka/bin/kafka-server-start.sh";
const CONFIG_DIR: &str = "/opt/kafka/config";

/// Whether `command` is the official image's own (which the helper then runs in its place).
pub fn is_official(command: &[OsString]) -> bool {
    command.len() == 1 && command[0] == OFFICIAL_COMMAND
}

/// Writes Kafka's configuration as the official image does and returns the command that
/// starts Kafka with it.
pub async fn configure(
    kraft: &KraftEnv,
    settings: &[(String, String)],
    limit: Duration,
) -> Result<Vec<OsString>, MemberError> {
    let mut command = tokio::process::Command::new(RUN_CLASS);
    command
        .args([
            "kafka.docker.KafkaDockerWrapper",
            "setup",
            "--default-configs-dir",
            "/etc/kafka/docker",
            "--mounted-configs-dir",
            "/mnt/shared/config",
            "--final-configs-dir",
            CONFIG_DIR,
        ])
        .envs(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        // A small heap for a tool that only writes files.
        .env("KAFKA_HEAP_OPTS", "-Xmx128m")
        .kill_on_drop(true);
    let output = tokio::time::timeout(limit, command.output())
        .await
        .map_err(|_| MemberError::Deadline(limit, "KafkaDockerWrapper setup".to_owned()))?
        .map_err(|source| MemberError::Io {
            path: RUN_CLASS.into(),
            source,
        })?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        let formatted = read_meta(&kraft.metadata_dir)?.is_some();
        let format_step = said.contains("already formatted")
            || said.contains("controller.quorum.voters")
            || said.contains("static voters");
        if !(formatted && format_step) {
            return Err(MemberError::KraftVolume(format!(
                "KafkaDockerWrapper setup failed ({}): {}",
                output.status,
                said.trim()
            )));
        }
        tracing::info!(
            "KafkaDockerWrapper wrote the configuration; its own format step is not needed (the join container formatted {})",
            kraft.metadata_dir.display()
        );
    }
    let config = Path::new(CONFIG_DIR).join("server.properties");
    Ok(vec![SERVER_START.into(), config.into_os_string()])
}
