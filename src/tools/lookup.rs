//! Finding a workload by name: which Deployment or StatefulSet of a namespace
//! a name means. People say "scale nginx to 5", not "scale deployment nginx":
//! exactly one match is used (and the answer says which kind), several are
//! listed back as a question, none gets the close names. The lookup is a
//! trait so the planner runs against the live cluster ([`super::ReadTools`],
//! bounded by the requester's RBAC like every read) and against a fixture in
//! the accuracy program.

use async_trait::async_trait;
use serde::Serialize;

use super::{ToolError, WorkloadKind};
use crate::api::ToolCall;

/// A Deployment or StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    /// Desired replicas, when known.
    pub replicas: Option<i32>,
}

impl Workload {
    /// `Deployment `nginx``.
    pub fn label(&self) -> String {
        let kind = match self.kind {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
        };
        format!("{kind} `{}`", self.name)
    }
}

/// Lists the workloads of a namespace for a name lookup.
#[async_trait]
pub trait WorkloadLookup: Send + Sync {
    /// The Deployments and StatefulSets of `namespace` (all of them, so close
    /// names can be offered), and the record of the tool call when one was
    /// made (for `status.investigation`).
    async fn workloads(
        &self,
        namespace: &str,
        name: &str,
    ) -> (Result<Vec<Workload>, ToolError>, Option<ToolCall>);
}

/// What a name means among the workloads of a namespace.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution<'a> {
    One(&'a Workload),
    /// Same name, different kinds.
    Several(Vec<&'a Workload>),
    /// No such name; the closest ones (by edit distance or prefix), best first.
    Missing {
        close: Vec<&'a Workload>,
    },
}

/// Resolves `name` among `all`.
pub fn resolve<'a>(name: &str, all: &'a [Workload]) -> Resolution<'a> {
    let exact: Vec<&Workload> = all.iter().filter(|w| w.name == name).collect();
    match exact.len() {
        1 => Resolution::One(exact[0]),
        0 => {
            let limit = if name.chars().count() <= 4 { 1 } else { 2 };
            let mut close: Vec<(usize, &Workload)> = all
                .iter()
                .filter_map(|w| {
                    let d = edit_distance(name, &w.name);
                    let related = w.name.starts_with(name) || name.starts_with(w.name.as_str());
                    (d <= limit || related).then_some((d, w))
                })
                .collect();
            close.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
            Resolution::Missing {
                close: close.into_iter().map(|(_, w)| w).take(5).collect(),
            }
        }
        _ => Resolution::Several(exact),
    }
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions
/// and swaps of two neighbours ("ngnix" is one step from "nginx").
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, v) in d[0].iter_mut().enumerate() {
        *v = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The answer of the `find_workload` tool (also what the builtin planner says
/// when a name does not resolve to exactly one workload).
pub fn describe_resolution(namespace: &str, name: &str, all: &[Workload]) -> String {
    match resolve(name, all) {
        Resolution::One(w) => format!(
            "{} in namespace `{namespace}`{}.",
            w.label(),
            w.replicas
                .map(|r| format!(" ({r} replicas desired)"))
                .unwrap_or_default()
        ),
        Resolution::Several(ws) => format!(
            "`{name}` is ambiguous in namespace `{namespace}`: {}. Name the kind.",
            labels(&ws)
        ),
        Resolution::Missing { close } if !close.is_empty() => format!(
            "No Deployment or StatefulSet named `{name}` in namespace `{namespace}`. Did you mean {}?",
            labels(&close)
        ),
        Resolution::Missing { .. } if all.is_empty() => format!(
            "No Deployment or StatefulSet named `{name}` in namespace `{namespace}`; it has none."
        ),
        Resolution::Missing { .. } => {
            let listed: Vec<&Workload> = all.iter().take(10).collect();
            format!(
                "No Deployment or StatefulSet named `{name}` in namespace `{namespace}`. It has: {}{}.",
                labels(&listed),
                if all.len() > 10 { ", …" } else { "" }
            )
        }
    }
}

fn labels(ws: &[&Workload]) -> String {
    ws.iter().map(|w| w.label()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(kind: WorkloadKind, name: &str) -> Workload {
        Workload {
            kind,
            name: name.into(),
            replicas: None,
        }
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("nginx", "nginx"), 0);
        assert_eq!(edit_distance("ngnix", "nginx"), 1);
        assert_eq!(edit_distance("api", "apx"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn one_several_or_close_names() {
        let all = vec![
            w(WorkloadKind::Deployment, "frontend"),
            w(WorkloadKind::StatefulSet, "db"),
            w(WorkloadKind::Deployment, "db"),
            w(WorkloadKind::Deployment, "frontend-canary"),
        ];
        assert_eq!(resolve("frontend", &all), Resolution::One(&all[0]));
        assert_eq!(
            resolve("db", &all),
            Resolution::Several(vec![&all[1], &all[2]])
        );
        let Resolution::Missing { close } = resolve("frontnd", &all) else {
            panic!("frontnd resolved")
        };
        assert_eq!(close[0].name, "frontend");
        let Resolution::Missing { close } = resolve("front", &all) else {
            panic!("front resolved")
        };
        assert_eq!(close.len(), 2, "prefixes are close: {close:?}");
        let msg = describe_resolution("shop", "queue", &all);
        assert!(msg.contains("It has: Deployment `frontend`"), "{msg}");
        let msg = describe_resolution("shop", "db", &all);
        assert!(
            msg.contains("StatefulSet `db`") && msg.contains("ambiguous"),
            "{msg}"
        );
        assert!(describe_resolution("shop", "x", &[]).contains("it has none"));
    }
}
