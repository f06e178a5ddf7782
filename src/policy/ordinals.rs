//! StatefulSet start ordinals (`spec.ordinals.start`, GA in Kubernetes 1.31): the pods, and
//! so the members, are the ordinals `start .. start + replicas`.

use std::fmt;

use k8s_openapi::api::apps::v1::StatefulSet;

/// `spec.ordinals.start`, 0 when unset.
/// `spec.replicas`, 1 when unset (the API server's default).
pub fn replicas(sts: &StatefulSet) -> i32 {
    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn start(sts: &StatefulSet) -> i32 {
    sts.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

/// The ordinals of the pods a StatefulSet wants now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Members {
    pub start: i32,
    pub replicas: i32,
}

impl Members {
    pub fn of(sts: &StatefulSet) -> Members {
        Members {
            start: start(sts),
            replicas: replicas(sts),
        }
    }

    /// One past the highest ordinal.
    pub fn end(&self) -> i32 {
        self.start.saturating_add(self.replicas)
    }

    /// At or beyond the end: a pod being (or already) scaled away.
    pub fn is_beyond(&self, ordinal: i32) -> bool {
        ordinal >= self.end()
    }

    pub fn ordinals(&self) -> std::ops::Range<i32> {
        self.start..self.end()
    }
}

/// What the end of the range is made of, for messages: "spec.replicas 3", or with a start
/// "spec.ordinals.start 1 + spec.replicas 3".
impl fmt::Display for Members {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.start {
            0 => write!(f, "spec.replicas {}", self.replicas),
            start => write!(
                f,
                "spec.ordinals.start {start} + spec.replicas {} = {}",
                self.replicas,
                self.end()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetOrdinals, StatefulSetSpec};

    fn sts(start: Option<i32>, replicas: i32) -> StatefulSet {
        StatefulSet {
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                ordinals: start.map(|s| StatefulSetOrdinals { start: Some(s) }),
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        }
    }

    #[test]
    fn the_members_start_at_spec_ordinals_start() {
        let m = Members::of(&sts(Some(1), 3));
        assert_eq!(m.ordinals().collect::<Vec<_>>(), [1, 2, 3]);
        assert!(!m.is_beyond(3) && m.is_beyond(4));
        assert_eq!(m.to_string(), "spec.ordinals.start 1 + spec.replicas 3 = 4");
        let m = Members::of(&sts(None, 3));
        assert_eq!(m.ordinals().collect::<Vec<_>>(), [0, 1, 2]);
        assert!(m.is_beyond(3));
        assert_eq!(m.to_string(), "spec.replicas 3");
    }
}
