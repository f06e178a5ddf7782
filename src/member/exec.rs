//! `raft-injector member exec -- COMMAND...`: the etcd flavor's entrypoint wrapper. Applies
//! the settings `member join` left in the helper volume (if any) and replaces itself with
//! COMMAND, so etcd runs as the container's main process with nothing in between.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;

use super::{MemberError, JOIN_ENV_FILE};

/// `KEY=VALUE` lines from the join file; none when the file does not exist.
pub fn join_settings(dir: &Path) -> Result<Vec<(String, String)>, MemberError> {
    let path = dir.join(JOIN_ENV_FILE);
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

/// Replaces this process with `command`; returns only on failure.
pub fn exec(dir: &Path, command: &[OsString]) -> MemberError {
    let settings = match join_settings(dir) {
        Ok(settings) => settings,
        Err(error) => return error,
    };
    let Some((program, args)) = command.split_first() else {
        return MemberError::MissingEnv("COMMAND");
    };
    for (key, value) in &settings {
        tracing::info!(%key, %value, "starting as a member that joined a running cluster");
    }
    let error = std::process::Command::new(program)
        .args(args)
        .envs(settings)
        .exec();
    MemberError::Io {
        path: program.into(),
        source: error,
    }
}
