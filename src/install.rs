//! `raft-injector install --to DIR`: what the injected init container runs. The helper
//! image has no shell or `cp`, so the binary copies itself into the shared emptyDir.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot install the helper into {dir}: {source}")]
pub struct InstallError {
    dir: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Copies the running executable to `dir/raft-injector`, executable, replacing it atomically.
pub fn install(dir: &Path) -> Result<PathBuf, InstallError> {
    let fail = |source| InstallError {
        dir: dir.to_owned(),
        source,
    };
    let me = std::env::current_exe().map_err(fail)?;
    let target = dir.join("raft-injector");
    let partial = dir.join(".raft-injector.partial");
    std::fs::copy(&me, &partial).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755)).map_err(fail)?;
    }
    std::fs::rename(&partial, &target).map_err(fail)?;
    Ok(target)
}
