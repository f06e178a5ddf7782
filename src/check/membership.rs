//! Membership drift: the Raft member list a member reports (`member status -o json`, run
//! in the pod through the API server) against `spec.replicas`, naming stale and missing
//! members.

use serde::Deserialize;

use super::Check;
use crate::member::etcd::ordinal_of;
use crate::policy::flavor::Flavor;
use crate::policy::ordinals::Members;

/// What `raft-injector member status -o json` prints, read leniently: the helper in a pod
/// may be of another version than this binary.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Reported {
    pub pod: String,
    pub id: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<ReportedMember>,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReportedMember {
    pub id: String,
    pub name: String,
    pub started: bool,
    pub learner: bool,
    pub peer_urls: Vec<String>,
}

/// The most a pod may print for `member status -o json`; more is refused unread.
pub const MAX_STATUS_BYTES: u64 = 1024 * 1024;
/// Members, problems and characters per string kept of what a pod reports.
const MAX_ITEMS: usize = 200;
const MAX_TEXT: usize = 512;

/// Characters that change how the text around them shows without being control
/// characters: bidirectional overrides, embeddings, isolates and marks (a "Trojan Source"
/// line reads differently from what it is).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A string a pod supplied, made safe to print on an operator's terminal: control
/// characters (escape sequences, carriage returns) and bidirectional controls removed and
/// the length clipped.
pub fn clean(text: &str) -> String {
    let shown = |c: &char| !c.is_control() && !is_bidi_control(*c);
    let mut out: String = text.chars().filter(shown).take(MAX_TEXT).collect();
    if text.chars().filter(shown).nth(MAX_TEXT).is_some() {
        out.push('…');
    }
    out
}

/// Whether `id` is an etcd member id as the helper prints it (hex, at most 64 bits), and so
/// safe to paste into a command.
fn is_member_id(id: &str) -> bool {
    (1..=16).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A Kafka voter id as the helper prints it, `<node id>@<directory id>`, parsed as the types
/// they are (an i32, Kafka's 22-character base64url uuid), so that only such values are
/// pasted into a command.
fn kraft_voter(id: &str) -> Option<(i32, &str)> {
    let (node, dir) = id.split_once('@')?;
    let node: i32 = node.parse().ok()?;
    let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    (dir.len() == 22 && dir.bytes().all(base64url)).then_some((node, dir))
}

impl Reported {
    /// What a pod reported, with every string cleaned and every list bounded: the pod's
    /// output is not trusted (anyone who can change its image controls it).
    pub fn cleaned(self) -> Reported {
        let member = |m: ReportedMember| ReportedMember {
            id: clean(&m.id),
            name: clean(&m.name),
            started: m.started,
            learner: m.learner,
            peer_urls: m.peer_urls.iter().take(8).map(|u| clean(u)).collect(),
        };
        Reported {
            pod: clean(&self.pod),
            id: self.id.as_deref().map(clean),
            leader: self.leader.as_deref().map(clean),
            members: self
                .members
                .into_iter()
                .take(MAX_ITEMS)
                .map(member)
                .collect(),
            problems: self
                .problems
                .iter()
                .take(MAX_ITEMS)
                .map(|p| clean(p))
                .collect(),
        }
    }
}

impl ReportedMember {
    /// The pod this member is, matched by name, id or peer address (a member added but
    /// never started has no name yet); `None` when it matches no pod of `statefulset`.
    fn ordinal_in(&self, statefulset: &str) -> Option<i32> {
        crate::member::cluster::RaftMember {
            id: self.id.clone(),
            name: self.name.clone(),
            addresses: self.peer_urls.clone(),
            voter: !self.learner,
            started: self.started,
        }
        .ordinal_in(statefulset)
    }

    fn describe(&self) -> String {
        let state = match (self.started, self.learner) {
            (false, _) => "not started",
            (true, true) => "learner",
            (true, false) => "started",
        };
        format!(
            "{} (id {}, {state}, {})",
            self.name,
            self.id,
            self.peer_urls.join(",")
        )
    }
}

/// Where the member list was read, for hints the operator can paste.
pub struct Source<'a> {
    pub flavor: Flavor,
    pub namespace: &'a str,
    pub statefulset: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
}

pub const CHECK: &str = "Raft members match spec.replicas";

/// Judges the reported member list. `settling` is set while the StatefulSet is still
/// scaling or rolling: drift is then expected and only warned about.
pub fn judge(
    group: &str,
    source: &Source,
    range: Members,
    reported: &Reported,
    settling: bool,
) -> Check {
    let sts = source.statefulset;
    let replicas = range.replicas;
    // Every member the application reports counts, except a Kafka observer that is no pod
    // of this StatefulSet (a broker reading the controllers' quorum). An etcd learner or a
    // member added and never started that matches no pod is exactly what a failed join or a
    // lost node leaves behind.
    let counted = |m: &&ReportedMember| {
        !(source.flavor == Flavor::Kraft && m.learner && m.ordinal_in(sts).is_none())
    };
    let stale: Vec<&ReportedMember> = reported
        .members
        .iter()
        .filter(counted)
        .filter(|m| {
            m.ordinal_in(sts)
                .is_none_or(|o| o < range.start || range.is_beyond(o))
        })
        .collect();
    let missing: Vec<String> = range
        .ordinals()
        .filter(|&i| {
            !reported
                .members
                .iter()
                .any(|m| m.ordinal_in(sts) == Some(i))
        })
        .map(|i| format!("{sts}-{i}"))
        .collect();
    let mut problems = Vec::new();
    for m in &stale {
        let why = match m.ordinal_in(sts) {
            Some(o) if o < range.start => {
                format!("ordinal {o} is below spec.ordinals.start {}", range.start)
            }
            Some(o) => format!("ordinal {o} is at or beyond {range}"),
            None => format!("not a pod of StatefulSet {sts} (added by hand or by another tool?)"),
        };
        problems.push(format!("stale member {}: {why}", m.describe()));
    }
    for name in &missing {
        problems.push(format!(
            "missing member {name}: spec.replicas is {replicas} but it is not in the member list"
        ));
    }
    if reported.leader.is_none() {
        problems
            .push("no leader: the cluster has no quorum, or this member cannot see it".to_owned());
    }
    for problem in &reported.problems {
        problems.push(format!("{} reported: {problem}", reported.pod));
    }
    if problems.is_empty() {
        let mut names: Vec<&str> = reported
            .members
            .iter()
            .filter(counted)
            .map(|m| m.name.as_str())
            .collect();
        names.sort_by_key(|n| (ordinal_of(sts, n), *n));
        return Check::pass(
            group,
            format!(
                "{CHECK} ({} members: {}; leader {})",
                names.len(),
                names.join(", "),
                reported.leader.as_deref().unwrap_or_default()
            ),
        );
    }
    let exec = format!(
        "kubectl -n {} exec {} -c {}",
        source.namespace, source.pod, source.container
    );
    let mut hints = Vec::new();
    if let Some(m) = stale.first() {
        let remove = if source.flavor == Flavor::Kraft {
            let port = crate::policy::flavor::kraft::DEFAULT_CONTROLLER_PORT;
            match kraft_voter(&m.id) {
                Some((id, dir)) => format!(
                    "remove it with: {exec} -- /opt/kafka/bin/kafka-metadata-quorum.sh --bootstrap-controller \
                     localhost:{port} remove-controller --controller-id {id} --controller-directory-id {dir}"
                ),
                None => format!(
                    "its reported id {:?} is not <node id>@<directory id>, so no command is suggested; list the \
                     voters with: {exec} -- /opt/kafka/bin/kafka-metadata-quorum.sh --bootstrap-controller \
                     localhost:{port} describe --status",
                    m.id
                ),
            }
        } else if source.flavor != Flavor::Etcd {
            format!(
                "the application removes it through its leave URL (annotation {}); the raft-injector-reconcile \
                 sidecar calls it for a member whose pod is gone, or remove {} with your Raft library's own tool",
                crate::policy::names::LEAVE_URL_ANNOTATION,
                m.name
            )
        } else if is_member_id(&m.id) {
            format!("remove it with: {exec} -- etcdctl member remove {}", m.id)
        } else {
            format!(
                "its reported id {:?} is not a hex member id, so no command is suggested; list the members with: \
                 {exec} -- etcdctl member list",
                m.id
            )
        };
        hints.push(format!(
            "a stale member counts toward the quorum, so it makes every failure more likely to stop the cluster; \
             {remove}"
        ));
        if stale.iter().any(|m| m.ordinal_in(sts).is_some()) {
            hints.push(
                "a member beyond spec.replicas whose pod is gone is removed by the raft-injector-reconcile sidecar \
                 within a minute; if it stays, its pod may be stuck Terminating (force-delete it first)"
                    .to_owned(),
            );
        }
    }
    if let Some(name) = missing.first() {
        hints.push(format!(
            "see why {name} did not join: kubectl -n {ns} logs {name} -c raft-injector-join; kubectl -n {ns} get events \
             --field-selector involvedObject.name={sts}",
            ns = source.namespace
        ));
    }
    if settling {
        hints.insert(
            0,
            "the StatefulSet is still scaling or rolling; rerun check once it settles".to_owned(),
        );
        return Check::warn(group, CHECK, problems.join("\n")).hint(hints.join("; "));
    }
    let mut check = Check::fail(group, CHECK, problems.join("\n"));
    if !hints.is_empty() {
        check = check.hint(hints.join("; "));
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Outcome;

    const THREE: Members = Members {
        start: 0,
        replicas: 3,
    };

    fn member(id: &str, name: &str, started: bool) -> ReportedMember {
        ReportedMember {
            id: id.to_owned(),
            name: name.to_owned(),
            started,
            learner: false,
            peer_urls: vec![format!("http://{name}.etcd.demo.svc.cluster.local:2380")],
        }
    }

    fn reported(members: Vec<ReportedMember>) -> Reported {
        Reported {
            pod: "etcd-0".to_owned(),
            id: Some("a1".to_owned()),
            leader: Some("etcd-0".to_owned()),
            members,
            problems: vec![],
        }
    }

    const SOURCE: Source = Source {
        flavor: Flavor::Etcd,
        namespace: "demo",
        statefulset: "etcd",
        pod: "etcd-0",
        container: "etcd",
    };

    const KRAFT: Source = Source {
        flavor: Flavor::Kraft,
        namespace: "q",
        statefulset: "etcd",
        pod: "etcd-0",
        container: "kafka",
    };

    fn three() -> Vec<ReportedMember> {
        vec![
            member("a1", "etcd-0", true),
            member("b2", "etcd-1", true),
            member("c3", "etcd-2", true),
        ]
    }

    #[test]
    fn an_etcd_learner_added_by_hand_that_never_started_fails_naming_its_peer_url() {
        let mut members = three();
        // As `member status` reports it: no name yet, labelled after its address.
        members.push(ReportedMember {
            id: "7c1e9a2b3d4f5a6b".to_owned(),
            name: "10".to_owned(),
            started: false,
            learner: true,
            peer_urls: vec!["http://10.244.0.99:2380".to_owned()],
        });
        let check = judge("g", &SOURCE, THREE, &reported(members.clone()), false);
        assert_eq!(check.outcome, Outcome::Fail, "{check:?}");
        let detail = check.detail.clone().unwrap_or_default();
        assert!(
            detail.contains("stale member") && detail.contains("http://10.244.0.99:2380"),
            "{detail}"
        );
        assert!(
            check
                .hint
                .as_deref()
                .unwrap_or_default()
                .contains("etcdctl member remove 7c1e9a2b3d4f5a6b"),
            "{check:?}"
        );
        // One added for a pod of the StatefulSet (scale-up in flight) is that pod's.
        members.pop();
        members.push(ReportedMember {
            name: String::new(),
            ..member("d4", "etcd-2", false)
        });
        members.remove(2);
        let check = judge("g", &SOURCE, THREE, &reported(members), false);
        assert_eq!(check.outcome, Outcome::Pass, "{check:?}");
    }

    #[test]
    fn kraft_observers_are_not_drift_and_a_stale_voter_gets_kafkas_own_command() {
        let source = KRAFT;
        let mut members = three();
        // A broker, and a controller not yet added: observers, unnamed.
        for id in ["100@DE4PHU0oTIUaExzaEz-YhA", "3@KRw1pnHfZ9vQm9hdlppfmQ"] {
            members.push(ReportedMember {
                learner: true,
                ..member(id, id, true)
            });
        }
        let check = judge("g", &source, THREE, &reported(members.clone()), false);
        assert_eq!(check.outcome, Outcome::Pass, "{check:?}");
        assert!(
            check.name.contains("3 members: etcd-0, etcd-1, etcd-2"),
            "{check:?}"
        );

        members.push(member("4@fXn9NbCVWXLJ1CKsUSpd6w", "etcd-4", true));
        let check = judge("g", &source, THREE, &reported(members), false);
        assert_eq!(check.outcome, Outcome::Fail, "{check:?}");
        let hint = check.hint.clone().unwrap_or_default();
        assert!(
            hint.contains("remove-controller --controller-id 4 --controller-directory-id fXn9NbCVWXLJ1CKsUSpd6w"),
            "{hint}"
        );
    }

    #[test]
    fn the_members_of_spec_replicas_and_a_leader_pass() {
        let check = judge("g", &SOURCE, THREE, &reported(three()), false);
        assert_eq!(check.outcome, Outcome::Pass, "{check:?}");
        assert!(
            check
                .name
                .contains("3 members: etcd-0, etcd-1, etcd-2; leader etcd-0"),
            "{}",
            check.name
        );
    }

    #[test]
    fn a_member_added_by_hand_is_named_with_its_id_and_the_command_that_removes_it() {
        let mut members = three();
        members.push(ReportedMember {
            name: "fake".to_owned(),
            peer_urls: vec!["http://fake.invalid:2380".to_owned()],
            ..member("8e9e", "fake", false)
        });
        let check = judge("g", &SOURCE, THREE, &reported(members), false);
        assert_eq!(check.outcome, Outcome::Fail);
        let detail = check.detail.unwrap();
        assert!(
            detail.contains("stale member fake (id 8e9e, not started, http://fake.invalid:2380)"),
            "{detail}"
        );
        assert!(detail.contains("not a pod of StatefulSet etcd"), "{detail}");
        let hint = check.hint.unwrap();
        assert!(
            hint.contains("kubectl -n demo exec etcd-0 -c etcd -- etcdctl member remove 8e9e"),
            "{hint}"
        );
        assert!(
            !hint.contains("reconcile"),
            "the sidecar never removes an unplaceable member: {hint}"
        );
    }

    #[test]
    fn a_hostile_kafka_voter_id_is_never_pasted_and_bidi_controls_are_stripped() {
        let source = KRAFT;
        for id in [
            "4@$(reboot)aaaaaaaaaaaaaaa",
            "4;id@fXn9NbCVWXLJ1CKsUSpd6w",
            "4@fXn9NbCVWXLJ1CKsUSpd6w;x",
            "4@`id`NbCVWXLJ1CKsUSpd6w",
        ] {
            let mut members = three();
            members.push(member(id, "etcd-4", true));
            let check = judge("g", &source, THREE, &reported(members).cleaned(), false);
            let hint = check.hint.unwrap_or_default();
            assert!(
                !hint.contains("remove-controller") && hint.contains("no command is suggested"),
                "{id}: {hint}"
            );
        }
        assert_eq!(clean("ab\u{202e}cd\u{2066}e\u{200f}"), "abcde");
    }

    #[test]
    fn hostile_output_is_cleaned_and_never_pasted_into_a_command() {
        let mut members = three();
        members.push(member("8e9e; rm -rf /", "\u{1b}[2Jevil\rname", false));
        let mut hostile = reported(members);
        hostile.problems = (0..1000).map(|i| format!("p{i}\u{7}")).collect();
        hostile.pod = "x".repeat(10_000);
        let cleaned = hostile.cleaned();
        assert_eq!(cleaned.problems.len(), MAX_ITEMS);
        assert!(cleaned.problems.iter().all(|p| !p.contains('\u{7}')));
        assert!(cleaned.pod.chars().count() <= MAX_TEXT + 1);
        let check = judge("g", &SOURCE, THREE, &cleaned, false);
        let detail = check.detail.unwrap();
        assert!(
            !detail.contains('\u{1b}') && !detail.contains('\r'),
            "{detail:?}"
        );
        assert!(detail.contains("[2Jevilname"), "{detail}");
        let hint = check.hint.unwrap();
        assert!(!hint.contains("member remove"), "{hint}");
        assert!(hint.contains("is not a hex member id"), "{hint}");
    }

    #[test]
    fn a_member_beyond_replicas_and_a_missing_one_are_both_named() {
        let members = vec![
            member("a1", "etcd-0", true),
            member("c3", "etcd-2", true),
            member("d4", "etcd-3", true),
        ];
        let check = judge("g", &SOURCE, THREE, &reported(members), false);
        assert_eq!(check.outcome, Outcome::Fail);
        let detail = check.detail.unwrap();
        assert!(detail.contains("stale member etcd-3 (id d4"), "{detail}");
        assert!(
            detail.contains("ordinal 3 is at or beyond spec.replicas 3"),
            "{detail}"
        );
        assert!(detail.contains("missing member etcd-1"), "{detail}");
        let hint = check.hint.unwrap();
        assert!(
            hint.contains("reconcile") && hint.contains("logs etcd-1 -c raft-injector-join"),
            "{hint}"
        );
    }

    #[test]
    fn drift_while_scaling_is_a_warning_and_no_leader_is_a_failure() {
        let mut members = three();
        members.push(member("d4", "etcd-3", true));
        let check = judge("g", &SOURCE, THREE, &reported(members), true);
        assert_eq!(check.outcome, Outcome::Warn);
        assert!(check
            .hint
            .unwrap()
            .starts_with("the StatefulSet is still scaling"));
        let mut leaderless = reported(three());
        leaderless.leader = None;
        let check = judge("g", &SOURCE, THREE, &leaderless, false);
        assert_eq!(check.outcome, Outcome::Fail);
        assert!(check.detail.unwrap().contains("no leader"));
    }

    #[test]
    fn a_generic_app_s_stale_member_is_named_with_its_leave_url_not_etcdctl() {
        let generic = Source {
            flavor: Flavor::Generic,
            namespace: "apps",
            statefulset: "kv",
            pod: "kv-0",
            container: "kv",
        };
        let mut members: Vec<ReportedMember> = (0..3)
            .map(|i| member("x", &format!("kv-{i}"), true))
            .collect();
        members.push(member("kv-4", "kv-4", true));
        let check = judge("g", &generic, THREE, &reported(members), false);
        assert_eq!(check.outcome, Outcome::Fail);
        assert!(
            check
                .detail
                .as_deref()
                .unwrap()
                .contains("stale member kv-4"),
            "{check:?}"
        );
        let hint = check.hint.unwrap_or_default();
        assert!(
            hint.contains("raft-injector.io/leave-url") && !hint.contains("etcdctl"),
            "{hint}"
        );
    }

    #[test]
    fn what_member_status_prints_is_what_check_reads() {
        use crate::member::status::{MemberView, OnStop, Status};
        let printed = Status {
            pod: "etcd-1".to_owned(),
            statefulset: "etcd".to_owned(),
            namespace: "demo".to_owned(),
            flavor: "etcd",
            id: Some("e91f".to_owned()),
            leader: Some("etcd-0".to_owned()),
            replicas: Some(3),
            members: vec![MemberView {
                id: "823f".to_owned(),
                name: "etcd-0".to_owned(),
                started: true,
                learner: false,
                peer_urls: vec!["http://etcd-0.etcd.demo.svc.cluster.local:2380".to_owned()],
                beyond_replicas: false,
            }],
            on_stop: OnStop {
                leaves: false,
                why: "x".to_owned(),
            },
            problems: vec!["p".to_owned()],
            notes: vec![],
        };
        let json = serde_json::to_string(&printed).unwrap();
        let read: Reported = serde_json::from_str(&json).unwrap();
        assert_eq!(read.pod, "etcd-1");
        assert_eq!(read.leader.as_deref(), Some("etcd-0"));
        assert_eq!(read.members[0].id, "823f");
        assert_eq!(read.members[0].peer_urls, printed.members[0].peer_urls);
        assert!(read.members[0].started);
        assert_eq!(read.problems, ["p"]);
    }
}
