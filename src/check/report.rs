//! The results of `check` and how they print: one line per check, grouped, with the
//! details and a hint under each problem (like `linkerd check`), or as JSON.

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    /// Works now but needs attention; does not fail the run.
    Warn,
    Fail,
    /// Could not be checked here, and that is not a problem (e.g. nothing to check yet).
    Skip,
}

impl Outcome {
    fn mark(self) -> &'static str {
        match self {
            Outcome::Pass => "√",
            Outcome::Warn => "‼",
            Outcome::Fail => "×",
            Outcome::Skip => "-",
        }
    }
}

/// One check: what was checked, how it came out, what was seen and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub group: String,
    pub name: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    pub fn pass(group: &str, name: impl Into<String>) -> Check {
        Check {
            group: group.to_owned(),
            name: name.into(),
            outcome: Outcome::Pass,
            detail: None,
            hint: None,
        }
    }

    pub fn warn(group: &str, name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            outcome: Outcome::Warn,
            detail: Some(detail.into()),
            ..Check::pass(group, name)
        }
    }

    pub fn fail(group: &str, name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            outcome: Outcome::Fail,
            detail: Some(detail.into()),
            ..Check::pass(group, name)
        }
    }

    pub fn skip(group: &str, name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            outcome: Outcome::Skip,
            detail: Some(detail.into()),
            ..Check::pass(group, name)
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Check {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Check {
        self.hint = Some(hint.into());
        self
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

impl Report {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.outcome == Outcome::Fail)
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for check in &self.checks {
            *match check.outcome {
                Outcome::Pass => &mut summary.pass,
                Outcome::Warn => &mut summary.warn,
                Outcome::Fail => &mut summary.fail,
                Outcome::Skip => &mut summary.skip,
            } += 1;
        }
        summary
    }

    /// The `-o json` document: every check and the counts.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "checks": self.checks,
            "summary": self.summary(),
            "success": !self.failed(),
        })
    }

    /// The text a person reads: groups in the order they were checked, a mark per line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut group: Option<&str> = None;
        for check in &self.checks {
            if group != Some(check.group.as_str()) {
                if group.is_some() {
                    out.push('\n');
                }
                let _ = writeln!(
                    out,
                    "{}\n{}",
                    check.group,
                    "-".repeat(check.group.chars().count())
                );
                group = Some(&check.group);
            }
            let _ = writeln!(out, "{} {}", check.outcome.mark(), check.name);
            if let Some(detail) = &check.detail {
                for line in detail.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
            if let Some(hint) = &check.hint {
                let _ = writeln!(out, "    hint: {hint}");
            }
        }
        let summary = self.summary();
        let _ = writeln!(
            out,
            "\nStatus check results are {} ({} passed, {} warnings, {} failed, {} skipped)",
            if self.failed() { "×" } else { "√" },
            summary.pass,
            summary.warn,
            summary.fail,
            summary.skip
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            checks: vec![
                Check::pass("raft-injector installation", "webhooks registered"),
                Check::warn(
                    "raft-injector installation",
                    "certificate",
                    "expires in 12 days",
                )
                .hint("rotate it"),
                Check::fail(
                    "StatefulSet demo/etcd",
                    "members match",
                    "stale member fake\nsecond line",
                )
                .hint("etcdctl member remove 8e9e"),
            ],
        }
    }

    #[test]
    fn text_groups_checks_marks_each_and_puts_details_and_hints_under_problems() {
        let text = report().render();
        assert!(
            text.starts_with(
                "raft-injector installation\n--------------------------\n√ webhooks registered\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("‼ certificate\n    expires in 12 days\n    hint: rotate it\n"),
            "{text}"
        );
        assert!(
            text.contains("\nStatefulSet demo/etcd\n---------------------\n× members match\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "    stale member fake\n    second line\n    hint: etcdctl member remove 8e9e"
            ),
            "{text}"
        );
        assert!(
            text.contains("Status check results are × (1 passed, 1 warnings, 1 failed, 0 skipped)"),
            "{text}"
        );
    }

    #[test]
    fn only_a_failure_fails_the_run() {
        let mut report = report();
        assert!(report.failed());
        report.checks.pop();
        assert!(!report.failed(), "a warning alone does not fail");
        assert!(report.render().contains("Status check results are √"));
    }

    #[test]
    fn json_lists_every_check_with_its_outcome_and_a_summary() {
        let json = report().to_json();
        assert_eq!(json["checks"].as_array().unwrap().len(), 3);
        assert_eq!(json["checks"][2]["outcome"], "fail");
        assert_eq!(json["checks"][2]["hint"], "etcdctl member remove 8e9e");
        assert!(json["checks"][0].get("hint").is_none());
        assert_eq!(json["summary"]["fail"], 1);
        assert_eq!(json["success"], false);
    }
}
