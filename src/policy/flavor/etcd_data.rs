//! What etcd's command line says about where it keeps its data, read the way etcd reads it,
//! so the join helper looks exactly there.
//!
//! A member that finds no data decides it is new; if it is wrong, it replaces a healthy
//! member and etcd then fails on the data it really has. So this answers only when etcd
//! runs directly (not through a shell or a config file), and gives only what the command
//! line says: the `--data-dir`, `--wal-dir` and `--name` flags. Everything else etcd reads
//! from its environment, which admission cannot see whole (`envFrom`, `valueFrom`, the
//! image's own ENV); the join container shares that environment (same image, env and
//! envFrom), so the helper reads the rest there, as etcd will (`member::EtcdEnv`).

use k8s_openapi::api::core::v1::Container;

use super::super::names::HELPER_BINARY;

/// etcd's flags that decide where its data is, as the command line gives them. Values may
/// be relative (to the container's working directory) and may hold `$(VAR)` references,
/// which kubelet expands in the join container's env as it does in the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataFlags {
    pub data_dir: Option<String>,
    pub wal_dir: Option<String>,
    pub name: Option<String>,
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
        // Neither command nor args: the injector starts etcd itself (the exec wrapper
        // names the etcd images' binary).
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

/// The flags of `container`'s etcd that say where its data is, or why its command line
/// cannot be read (the helper then never takes the member for one without data).
pub fn locate(container: &Container) -> Result<DataFlags, String> {
    let words = etcd_arguments(container)?;
    let flags = flags(&words);
    let flag = |name: &str| {
        flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let config_in_env = container
        .env
        .iter()
        .flatten()
        .any(|v| v.name == "ETCD_CONFIG_FILE" && v.value.as_deref() != Some(""));
    if flag("config-file").is_some() || config_in_env {
        return Err(
            "etcd reads a config file (--config-file or ETCD_CONFIG_FILE), which overrides its flags and env"
                .to_owned(),
        );
    }
    let given = |name: &str| flag(name).filter(|v| !v.is_empty());
    Ok(DataFlags {
        data_dir: given("data-dir"),
        wal_dir: given("wal-dir"),
        name: given("name"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::EnvVar;

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

    fn data_dir(c: &Container) -> Result<Option<String>, String> {
        locate(c).map(|l| l.data_dir)
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
                data_dir(&c),
                Ok(Some("/var/run/etcd/default.etcd".to_owned())),
                "{command:?} (the flag wins over the env var, as in etcd)"
            );
        }
    }

    #[test]
    fn data_dir_in_args_after_the_command_or_behind_the_entrypoint() {
        for (command, args) in [
            (&["etcd"][..], &["--data-dir=/d"][..]),
            (&[], &["--data-dir", "/d"]),
            (&[], &["etcd", "--data-dir", "/d"]),
        ] {
            let c = container(command, args, &[]);
            assert_eq!(
                data_dir(&c),
                Ok(Some("/d".to_owned())),
                "{command:?} {args:?}"
            );
        }
    }

    #[test]
    fn env_is_left_to_the_helper_which_shares_etcds_environment() {
        // ETCD_DATA_DIR may as well come from envFrom or the image: admission does not
        // pretend to know it, and the join container reads it where etcd does.
        let c = container(&["etcd"], &[], &[("ETCD_DATA_DIR", "/var/lib/etcd")]);
        assert_eq!(locate(&c), Ok(DataFlags::default()));
        let c = container(&["etcd", "--name=$(HOSTNAME)"], &[], &[]);
        assert_eq!(locate(&c).unwrap().name.as_deref(), Some("$(HOSTNAME)"));
        let c = container(&["etcd", "--data-dir", "$(DATA_DIR)"], &[], &[]);
        assert_eq!(data_dir(&c), Ok(Some("$(DATA_DIR)".to_owned())));
    }

    #[test]
    fn wal_dir_from_the_flag() {
        let c = container(&["etcd", "--wal-dir", "/wal"], &[], &[]);
        assert_eq!(locate(&c).unwrap().wal_dir.as_deref(), Some("/wal"));
        let c = container(&["etcd"], &[], &[("ETCD_WAL_DIR", "/wal2")]);
        assert_eq!(locate(&c).unwrap().wal_dir, None);
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
        assert_eq!(data_dir(&c), Ok(Some("/d".to_owned())));
        let c = container(&[HELPER_BINARY, "member", "exec", "etcd"], &[], &[]);
        assert!(locate(&c).unwrap_err().contains("without `--`"));
    }

    #[test]
    fn unknown_when_etcd_is_not_run_directly_or_reads_a_config_file() {
        let shell = container(&["sh", "-c", "exec etcd --data-dir=/d"], &[], &[]);
        assert!(data_dir(&shell).unwrap_err().contains("not etcd directly"));
        let config = container(&["etcd", "--config-file", "/etc/etcd.yaml"], &[], &[]);
        assert!(data_dir(&config).unwrap_err().contains("config file"));
        let config = container(&["etcd"], &[], &[("ETCD_CONFIG_FILE", "/etc/etcd.yaml")]);
        assert!(data_dir(&config).unwrap_err().contains("config file"));
    }
}
