//! What etcd's `member join` does, as a table: what the member's volume holds, whether it is
//! a bootstrap member, whether the cluster is recorded as formed (`member::formation`) and
//! what the cluster answered. Pure, so that every row is a unit test; `join` gathers the
//! inputs, acts on the answer, and asks again while the answer is to wait.
//!
//! The rules, safest first:
//! - a member with data is never replaced: it resumes (or, removed earlier, has its data set
//!   aside and joins anew), and never waits for a quorum to start;
//! - a member without data that the cluster lists as started lost its volume: it is
//!   replaced, but only when the helper is certain where etcd keeps its data; unsure keeps it;
//! - a new cluster is started only by a bootstrap member, only when the cluster is not
//!   recorded as formed, no peer reports a formed cluster, and nobody answered for the
//!   cold-start wait;
//! - anything else waits for a quorum.

/// What the data directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// etcd's WAL or snapshot, where etcd keeps them.
    Found,
    /// Nothing where etcd keeps its data, and the helper is certain of the place.
    Empty,
    /// Nothing found, but etcd may keep its data where the helper did not look.
    Unsure,
}

/// What the cluster answered this time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A quorum's member list (a linearizable read) names this member as started.
    ListsStarted,
    /// It names this member, added but never started.
    ListsNotStarted,
    /// It does not name this member.
    DoesNotList,
    /// No quorum answered. `formed_peer`: a peer restarting from its data reports a cluster
    /// that formed before; `cold_wait_over`: the cold-start wait has passed since the first ask.
    NoQuorum {
        formed_peer: bool,
        cold_wait_over: bool,
    },
}

/// Why a member waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// Its volume is empty and the record says the cluster formed: a lost volume.
    VolumeLost,
    /// No record, but a peer reports a formed cluster.
    FormedPeer,
    /// No record and silence: maybe a first start, maybe a cluster that is down.
    ColdStart,
    /// A member beyond the bootstrap set can only join through a quorum.
    Quorum,
}

/// What `join` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start etcd on its data.
    Resume,
    /// The data belongs to a member removed earlier: set it aside, join as a new member.
    SetAsideAndJoin,
    /// Listed as started without data: remove the old identity, add a new member.
    Replace,
    /// Add this member (or reuse an add not started yet) and join.
    Join,
    /// Start with the injected bootstrap settings (a new cluster, or a late first start).
    Bootstrap,
    /// Keep the member: fail the join, start nothing, say how to replace it by hand.
    Keep,
    /// Ask again (until the join's budget, then fail; kubelet retries).
    Wait(WaitFor),
}

/// The decision for one answer.
pub fn decide(data: Data, bootstrap: bool, formed: bool, answer: Answer) -> Action {
    use Action::*;
    match (data, answer) {
        (Data::Found, Answer::DoesNotList) => SetAsideAndJoin,
        (Data::Found, _) => Resume,
        (Data::Empty, Answer::ListsStarted) => Replace,
        (Data::Unsure, Answer::ListsStarted) => Keep,
        (_, Answer::ListsNotStarted) if bootstrap => Bootstrap,
        (_, Answer::ListsNotStarted | Answer::DoesNotList) => Join,
        (_, Answer::NoQuorum { .. }) if !bootstrap => Wait(WaitFor::Quorum),
        (_, Answer::NoQuorum { .. }) if formed => Wait(WaitFor::VolumeLost),
        (
            _,
            Answer::NoQuorum {
                formed_peer: true, ..
            },
        ) => Wait(WaitFor::FormedPeer),
        (
            _,
            Answer::NoQuorum {
                cold_wait_over: true,
                ..
            },
        ) => Bootstrap,
        (_, Answer::NoQuorum { .. }) => Wait(WaitFor::ColdStart),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    const SILENCE: Answer = Answer::NoQuorum {
        formed_peer: false,
        cold_wait_over: true,
    };
    const EARLY_SILENCE: Answer = Answer::NoQuorum {
        formed_peer: false,
        cold_wait_over: false,
    };
    const FORMED_PEER: Answer = Answer::NoQuorum {
        formed_peer: true,
        cold_wait_over: true,
    };
    const EVERY_ANSWER: [Answer; 6] = [
        Answer::ListsStarted,
        Answer::ListsNotStarted,
        Answer::DoesNotList,
        SILENCE,
        EARLY_SILENCE,
        FORMED_PEER,
    ];

    /// Every combination, for the rules that hold across rows.
    fn every() -> Vec<(Data, bool, bool, Answer, Action)> {
        let mut all = Vec::new();
        for data in [Data::Found, Data::Empty, Data::Unsure] {
            for bootstrap in [true, false] {
                for formed in [true, false] {
                    for answer in EVERY_ANSWER {
                        all.push((
                            data,
                            bootstrap,
                            formed,
                            answer,
                            decide(data, bootstrap, formed, answer),
                        ));
                    }
                }
            }
        }
        all
    }

    #[test]
    fn a_member_with_data_resumes_or_is_set_aside_and_never_waits() {
        for bootstrap in [true, false] {
            for formed in [true, false] {
                for answer in [
                    Answer::ListsStarted,
                    Answer::ListsNotStarted,
                    SILENCE,
                    EARLY_SILENCE,
                    FORMED_PEER,
                ] {
                    assert_eq!(decide(Data::Found, bootstrap, formed, answer), Resume);
                }
                assert_eq!(
                    decide(Data::Found, bootstrap, formed, Answer::DoesNotList),
                    SetAsideAndJoin
                );
            }
        }
    }

    #[test]
    fn listed_as_started_without_data_is_replaced_when_certain_and_kept_when_unsure() {
        for bootstrap in [true, false] {
            for formed in [true, false] {
                assert_eq!(
                    decide(Data::Empty, bootstrap, formed, Answer::ListsStarted),
                    Replace
                );
                assert_eq!(
                    decide(Data::Unsure, bootstrap, formed, Answer::ListsStarted),
                    Keep
                );
            }
        }
    }

    #[test]
    fn without_data_a_member_the_quorum_does_not_list_joins_and_one_never_started_starts() {
        for data in [Data::Empty, Data::Unsure] {
            for formed in [true, false] {
                assert_eq!(decide(data, true, formed, Answer::DoesNotList), Join);
                assert_eq!(decide(data, false, formed, Answer::DoesNotList), Join);
                assert_eq!(
                    decide(data, true, formed, Answer::ListsNotStarted),
                    Bootstrap
                );
                assert_eq!(decide(data, false, formed, Answer::ListsNotStarted), Join);
            }
        }
    }

    #[test]
    fn a_lost_volume_of_a_formed_cluster_waits_for_a_quorum_whatever_the_silence() {
        for data in [Data::Empty, Data::Unsure] {
            for answer in [SILENCE, EARLY_SILENCE, FORMED_PEER] {
                assert_eq!(decide(data, true, true, answer), Wait(WaitFor::VolumeLost));
            }
        }
    }

    #[test]
    fn without_a_record_a_formed_peer_means_wait_and_silence_past_the_cold_wait_a_new_cluster() {
        for data in [Data::Empty, Data::Unsure] {
            assert_eq!(
                decide(data, true, false, FORMED_PEER),
                Wait(WaitFor::FormedPeer)
            );
            assert_eq!(
                decide(data, true, false, EARLY_SILENCE),
                Wait(WaitFor::ColdStart)
            );
            assert_eq!(decide(data, true, false, SILENCE), Bootstrap);
        }
    }

    #[test]
    fn a_member_beyond_the_bootstrap_set_without_data_needs_a_quorum() {
        for data in [Data::Empty, Data::Unsure] {
            for formed in [true, false] {
                for answer in [SILENCE, EARLY_SILENCE, FORMED_PEER] {
                    assert_eq!(decide(data, false, formed, answer), Wait(WaitFor::Quorum));
                }
            }
        }
    }

    #[test]
    fn only_an_unrecorded_bootstrap_member_in_silence_starts_a_new_cluster() {
        for (data, bootstrap, formed, answer, action) in every() {
            if matches!(answer, Answer::NoQuorum { .. }) && action == Bootstrap {
                assert!(
                    data != Data::Found && bootstrap && !formed && answer == SILENCE,
                    "{data:?} bootstrap={bootstrap} formed={formed} {answer:?}"
                );
            }
            // Nothing that may hold data is ever replaced.
            if action == Replace {
                assert_eq!(data, Data::Empty, "{bootstrap} {formed} {answer:?}");
            }
        }
    }
}
