//! Where the offline commands read from: files, directories (their `.yaml`, `.yml` and
//! `.json` files, recursively with `-R`, like kubectl) and stdin (`-`).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::OfflineError;

/// Largest input file accepted; manifests are far smaller, and this keeps a wrong path
/// (a disk image, /dev/zero) from being read into memory.
pub const MAX_INPUT_BYTES: u64 = 32 * 1024 * 1024;

/// One input: a name for messages and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    pub name: String,
    pub text: String,
}

fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn read_bounded(name: String, reader: impl Read) -> Result<Input, OfflineError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| OfflineError::Read {
            path: name.clone(),
            message: source.to_string(),
        })?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(OfflineError::Read {
            path: name,
            message: format!("larger than {MAX_INPUT_BYTES} bytes, which no manifest is"),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| OfflineError::Read {
        path: name.clone(),
        message: "not UTF-8 text".to_owned(),
    })?;
    Ok(Input { name, text })
}

/// Directories and files already read, by their real path: a symlinked directory is
/// followed once, so links to one directory (or a link to its own parent) neither repeat
/// documents nor grow the walk without end.
#[derive(Default)]
struct Seen(std::collections::HashSet<PathBuf>);

impl Seen {
    /// Whether `path` is new (and now seen); a path that cannot be resolved counts as new.
    fn first_time(&mut self, path: &Path) -> bool {
        match std::fs::canonicalize(path) {
            Ok(real) => self.0.insert(real),
            Err(_) => true,
        }
    }
}

fn walk(
    dir: &Path,
    recursive: bool,
    seen: &mut Seen,
    out: &mut Vec<PathBuf>,
) -> Result<(), OfflineError> {
    if !seen.first_time(dir) {
        return Ok(());
    }
    let failed = |error: std::io::Error| OfflineError::Read {
        path: dir.display().to_string(),
        message: error.to_string(),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(failed)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(failed)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                walk(&path, recursive, seen, out)?;
            }
        } else if is_manifest(&path) && seen.first_time(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads every input named by `paths`, in order; a directory contributes its manifests in
/// name order.
pub fn read(paths: &[PathBuf], recursive: bool) -> Result<Vec<Input>, OfflineError> {
    let mut inputs = Vec::new();
    let mut seen = Seen::default();
    for path in paths {
        if path == Path::new("-") {
            inputs.push(read_bounded("<stdin>".to_owned(), std::io::stdin().lock())?);
            continue;
        }
        let files = if path.is_dir() {
            let mut files = Vec::new();
            walk(path, recursive, &mut seen, &mut files)?;
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            let name = file.display().to_string();
            let opened = std::fs::File::open(&file).map_err(|error| OfflineError::Read {
                path: name.clone(),
                message: error.to_string(),
            })?;
            inputs.push(read_bounded(name, opened)?);
        }
    }
    Ok(inputs)
}
