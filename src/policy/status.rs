//! The bookkeeping annotation `raft-injector.io/status` (SPEC §4).

use super::pieces::{helper_mount, helper_volume, Env};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::flavor::Flavor;
use super::names::STATUS_ANNOTATION;

/// What the injector recorded the last time it injected a StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The injector version that wrote this.
    pub version: String,
    /// Replica count the cluster was bootstrapped with; the peer list is frozen to it.
    pub bootstrap_size: i32,
    pub flavor: Flavor,
    /// Env vars the injector owns on the target container; any other name was set by the user.
    pub env: Vec<String>,
    /// SHA-256 over everything injected into the pod template, to spot drift.
    pub hash: String,
}

impl Status {
    /// The recorded status, if the object carries a readable one.
    pub fn of(sts: &StatefulSet) -> Option<Status> {
        let raw = sts.metadata.annotations.as_ref()?.get(STATUS_ANNOTATION)?;
        serde_json::from_str(raw).ok()
    }

    pub fn to_annotation(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the injector owns the env var `name`.
    pub fn owns_env(&self, name: &str) -> bool {
        self.env.iter().any(|owned| owned == name)
    }
}

/// The status annotations one admission reads: the object's, and the stored object's on
/// UPDATE. Read once and handed to every rule that needs them (each is a small JSON
/// document of its own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub new: Option<Status>,
    /// The stored object's, read only when the object's own does not decide: it has none,
    /// or it records a bootstrap size of 0.
    pub old: Option<Status>,
}

impl Recorded {
    pub fn of(sts: &StatefulSet, old: Option<&StatefulSet>) -> Recorded {
        let new = Status::of(sts);
        let decided = new.as_ref().is_some_and(|s| s.bootstrap_size != 0);
        Recorded {
            old: if decided {
                None
            } else {
                old.and_then(Status::of)
            },
            new,
        }
    }

    /// The object's status, else the stored object's: a server-side apply that omits the
    /// annotation removes it from the new object.
    pub fn previous(&self) -> Option<&Status> {
        self.new.as_ref().or(self.old.as_ref())
    }

    /// The non-zero bootstrap size recorded, the object's first.
    pub fn bootstrap_size(&self) -> Option<i32> {
        [&self.new, &self.old]
            .into_iter()
            .flatten()
            .map(|status| status.bootstrap_size)
            .find(|&size| size != 0)
    }
}

/// SHA-256 over everything the injector puts into the pod template.
pub(crate) fn injection_hash(
    container: usize,
    desired: &[EnvVar],
    desired_json: &[&RawValue],
    owned: &[String],
    init: &Container,
    pre_stop: bool,
) -> String {
    let env: Vec<Env> = desired
        .iter()
        .zip(desired_json)
        .filter(|(v, _)| owned.contains(&v.name))
        .map(|(_, json)| Env::Injected(json))
        .collect();
    // Hashed as compact JSON, byte for byte what `Value::to_string` printed when this was
    // first written (recorded hashes must not change).
    let material = (
        env,
        init,
        helper_volume(),
        helper_mount(),
        pre_stop,
        container,
    );
    let mut hashing = Hashing::default();
    // Writing plain structs into the hasher cannot fail.
    let _ = serde_json::to_writer(&mut hashing, &material);
    let digest = hashing.finish();
    let mut hex = String::with_capacity(64);
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in digest {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 15)]));
    }
    hex
}

/// SHA-256 of what is written, fed in blocks from a buffer on the stack: serde writes JSON
/// in many small pieces, and each would be a call into the hasher.
pub(crate) struct Hashing {
    hasher: Sha256,
    buffer: [u8; 512],
    len: usize,
}

impl Default for Hashing {
    fn default() -> Self {
        Hashing {
            hasher: Sha256::new(),
            buffer: [0; 512],
            len: 0,
        }
    }
}

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.len + bytes.len() > self.buffer.len() {
            self.hasher.update(&self.buffer[..self.len]);
            self.len = 0;
        }
        if bytes.len() > self.buffer.len() {
            self.hasher.update(bytes);
        } else {
            self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Hashing {
    fn finish(mut self) -> [u8; 32] {
        self.hasher.update(&self.buffer[..self.len]);
        self.hasher.finalize().into()
    }
}

#[cfg(test)]
mod hashing_tests {
    use super::Hashing;
    use sha2::{Digest, Sha256};
    use std::io::Write;

    #[test]
    fn hashing_in_pieces_is_hashing_the_whole() {
        // Pieces that fit the buffer, fill it exactly, overflow it, and exceed it alone.
        let whole: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
        for sizes in [
            &[1usize, 3, 17][..],
            &[512],
            &[511, 2, 700],
            &[1500, 1, 1499],
        ] {
            let mut hashing = Hashing::default();
            let mut at = 0;
            for &size in sizes.iter().cycle() {
                if at == whole.len() {
                    break;
                }
                let end = (at + size).min(whole.len());
                hashing.write_all(&whole[at..end]).unwrap();
                at = end;
            }
            assert_eq!(
                hashing.finish().as_slice(),
                Sha256::digest(&whole).as_slice(),
                "pieces of {sizes:?}"
            );
        }
    }
}
