//! Where etcd keeps its data in the target container, read from the container's command
//! line and env the way etcd reads them, so the join helper looks exactly there.
//!
//! A member that finds no data decides it is new; if it is wrong, it replaces a healthy
//! member and etcd then fails on the data it really has. So this answers only when it is
//! sure: etcd run directly (not through a shell or a config file), with the data directory
//! and WAL directory as etcd would resolve them (flag over env over the `<name>.etcd`
//! default). Anything else is an error that says why, and the helper then never treats the
//! member as empty.

use k8s_openapi::api::core::v1::Container;

use super::super::names::HELPER_BINARY;

/// etcd's data and WAL directories as the container's command line and env give them.
/// Paths may be relative (to the container's working directory) and may hold `$(VAR)`
/// references, which kubelet expands as it does in the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataLocation {
    pub data_dir: String,
    /// `--wal-dir`/`ETCD_WAL_DIR`; without it the WAL is under the data directory.
    pub wal_dir: Option<String>,
}

/// The value etcd would use for `flag`: the command-line flag, else the env var `env`.
/// `Err` when the env var comes from a source only kubelet can read.
fn setting(
    flags: &[(String, String)],
    container: &Container,
    flag: &str,
    env: &str,
) -> Result<Option<String>, String> {
    if let Some((_, value)) = flags.iter().rev().find(|(name, _)| name == flag) {
        return Ok(Some(value.clone()));
    }
    let var = container.env.iter().flatten().rev().find(|v| v.name == env);
    match var {
        None => Ok(None),
        Some(v) if v.value_from.is_some() => Err(format!(
            "env var {env} comes from a reference (valueFrom) that only kubelet resolves"
        )),
        Some(v) => Ok(v.value.clone().filter(|s| !s.is_empty())),
    }
}

/// The words of the command line after the program, when the program is etcd itself.
fn etcd_arguments(container: &Container) -> Result<Vec<String>, String> {
    let mut words: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .cloned()
        .collect();
    // Already wrapped by the injector: `<helper> member exec -- <command>`.
    if words.first().map(String::as_str) == Some(HELPER_BINARY) {
        match words.iter().position(|w| w == "--") {
            Some(end) => {
                words.drain(..=end);
            }
            None => return Err("the command runs the helper without `--`".to_owned()),
        }
    }
    match words.first() {
        // The image's entrypoint with no arguments, or with flags only: etcd's images
        // start etcd.
        None => Ok(words),
        Some(first) if first.starts_with('-') => Ok(words),
        Some(program) => {
            let base = program.rsplit('/').next().unwrap_or(program);
            if base == "etcd" {
                Ok(words.split_off(1))
            } else {
                Err(format!(
                    "the container runs {program:?}, not etcd directly, so etcd's flags cannot be read from its command line"
                ))
            }
        }
    }
}

/// etcd's flags as Go's flag package reads them: `-f v`, `--f v`, `-f=v`, `--f=v`; parsing
/// stops at `--` or at the first word that is not a flag.
fn flags(words: &[String]) -> Vec<(String, String)> {
    let mut parsed = Vec::new();
    let mut rest = words.iter();
    while let Some(word) = rest.next() {
        if word == "--" || !word.starts_with('-') {
            break;
        }
        let name = word.trim_start_matches('-');
        match name.split_once('=') {
            Some((name, value)) => parsed.push((name.to_owned(), value.to_owned())),
            None => {
                let value = rest.clone().next().filter(|next| !next.starts_with('-'));
                if value.is_some() {
                    rest.next();
                }
                parsed.push((name.to_owned(), value.cloned().unwrap_or_default()));
            }
        }
    }
    parsed
}

/// Where etcd in `container` keeps its data, or why that cannot be known from the spec.
/// `injected_name` is the `ETCD_NAME` the injector sets when the user does not.
pub fn locate(container: &Container, injected_name: &str) -> Result<DataLocation, String> {
    let words = etcd_arguments(container)?;
    let flags = flags(&words);
    if setting(&flags, container, "config-file", "ETCD_CONFIG_FILE")?.is_some() {
        return Err(
            "etcd reads a config file (--config-file or ETCD_CONFIG_FILE), which overrides its flags and env"
                .to_owned(),
        );
    }
    let data_dir = match setting(&flags, container, "data-dir", "ETCD_DATA_DIR")? {
        Some(dir) => dir,
        None => {
            let name = setting(&flags, container, "name", "ETCD_NAME")?
                .unwrap_or_else(|| injected_name.to_owned());
            format!("{name}.etcd")
        }
    };
    let wal_dir = setting(&flags, container, "wal-dir", "ETCD_WAL_DIR")?;
    Ok(DataLocation { data_dir, wal_dir })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector};

    fn container(command: &[&str], args: &[&str], env: &[(&str, &str)]) -> Container {
        let words = |w: &[&str]| (!w.is_empty()).then(|| w.iter().map(|s| s.to_string()).collect());
        Container {
            name: "etcd".into(),
            command: words(command),
            args: words(args),
            env: (!env.is_empty()).then(|| {
                env.iter()
                    .map(|(n, v)| EnvVar {
                        name: n.to_string(),
                        value: Some(v.to_string()),
                        value_from: None,
                    })
                    .collect()
            }),
            ..Container::default()
        }
    }

    fn data_dir(c: &Container) -> Result<String, String> {
        locate(c, "$(POD_NAME)").map(|l| l.data_dir)
    }

    #[test]
    fn data_dir_flag_in_every_form_go_accepts() {
        for command in [
            &["etcd", "--data-dir", "/var/run/etcd/default.etcd"][..],
            &["etcd", "--data-dir=/var/run/etcd/default.etcd"],
            &[
                "/usr/local/bin/etcd",
                "-data-dir",
                "/var/run/etcd/default.etcd",
            ],
            &[
                "etcd",
                "--name",
                "x",
                "-data-dir=/var/run/etcd/default.etcd",
            ],
        ] {
            let c = container(command, &[], &[("ETCD_DATA_DIR", "/elsewhere")]);
            assert_eq!(
                data_dir(&c).as_deref(),
                Ok("/var/run/etcd/default.etcd"),
                "{command:?} (the flag wins over the env var, as in etcd)"
            );
        }
    }

    #[test]
    fn data_dir_in_args_after_the_command_or_behind_the_entrypoint() {
        let c = container(&["etcd"], &["--data-dir=/d"], &[]);
        assert_eq!(data_dir(&c).as_deref(), Ok("/d"));
        let c = container(&[], &["--data-dir", "/d"], &[]);
        assert_eq!(data_dir(&c).as_deref(), Ok("/d"));
        let c = container(&[], &["etcd", "--data-dir", "/d"], &[]);
        assert_eq!(data_dir(&c).as_deref(), Ok("/d"));
    }

    #[test]
    fn data_dir_from_env_then_the_name_default() {
        let c = container(&["etcd"], &[], &[("ETCD_DATA_DIR", "/var/lib/etcd")]);
        assert_eq!(data_dir(&c).as_deref(), Ok("/var/lib/etcd"));
        let c = container(&["etcd"], &[], &[]);
        assert_eq!(data_dir(&c).as_deref(), Ok("$(POD_NAME).etcd"));
        let c = container(&["etcd"], &[], &[("ETCD_NAME", "member-a")]);
        assert_eq!(data_dir(&c).as_deref(), Ok("member-a.etcd"));
        let c = container(&["etcd", "--name=$(HOSTNAME)"], &[], &[]);
        assert_eq!(data_dir(&c).as_deref(), Ok("$(HOSTNAME).etcd"));
    }

    #[test]
    fn wal_dir_from_flag_or_env() {
        let c = container(&["etcd", "--wal-dir", "/wal"], &[], &[]);
        assert_eq!(locate(&c, "n").unwrap().wal_dir.as_deref(), Some("/wal"));
        let c = container(&["etcd"], &[], &[("ETCD_WAL_DIR", "/wal2")]);
        assert_eq!(locate(&c, "n").unwrap().wal_dir.as_deref(), Some("/wal2"));
        let c = container(&["etcd"], &[], &[]);
        assert_eq!(locate(&c, "n").unwrap().wal_dir, None);
    }

    #[test]
    fn a_wrapped_command_is_read_behind_the_helper() {
        let c = container(
            &[
                HELPER_BINARY,
                "member",
                "exec",
                "--",
                "etcd",
                "--data-dir=/d",
            ],
            &[],
            &[],
        );
        assert_eq!(data_dir(&c).as_deref(), Ok("/d"));
    }

    #[test]
    fn unknown_when_etcd_is_not_run_directly_or_reads_a_config_file() {
        let shell = container(&["sh", "-c", "exec etcd --data-dir=/d"], &[], &[]);
        assert!(data_dir(&shell).unwrap_err().contains("not etcd directly"));
        let config = container(&["etcd", "--config-file", "/etc/etcd.yaml"], &[], &[]);
        assert!(data_dir(&config).unwrap_err().contains("config file"));
        let mut from_ref = container(&["etcd"], &[], &[]);
        from_ref.env = Some(vec![EnvVar {
            name: "ETCD_DATA_DIR".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
        }]);
        assert!(data_dir(&from_ref).unwrap_err().contains("valueFrom"));
    }
}
