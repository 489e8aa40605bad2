//! Approval policies, decided here (pure): which rules apply to a plan (the
//! stricter of every applicable policy, and of the rules recorded when the
//! plan was first offered), which approvals count towards the quorum, whether
//! a change window is open, and — only when all of that holds — the token.

use jiff::Timestamp;

use super::window::{WindowState, window_state};
use super::{Approved, SOURCE_GITOPS, SOURCE_PLAN};
use crate::access::same_person;
use crate::api::{
    AIApprovalPolicy, AIClusterApprovalPolicy, AIPlan, AIRequest, AllowList, PlanStep,
    PolicySnapshot, PolicyWindows, PreApproval, Requester, Risk, RiskRule,
};

/// Where an entry of `AIPlan.spec.approvals` is written.
pub const SOURCE_PLAN_LIST: &str = "AIPlan spec.approvals";

/// The rules of every policy that applies to a plan of `risk` with `steps` in
/// namespace `ns`, combined so that the stricter always wins. `None` when no
/// policy applies (the gate's plain rules: one approver, any time).
pub fn effective(
    cluster: &[AIClusterApprovalPolicy],
    namespaced: &[AIApprovalPolicy],
    ns: &str,
    risk: Risk,
    steps: &[PlanStep],
) -> Option<PolicySnapshot> {
    use kube::ResourceExt;
    let cluster: Vec<&AIClusterApprovalPolicy> = cluster
        .iter()
        .filter(|p| p.spec.namespaces.is_empty() || p.spec.namespaces.iter().any(|n| n == ns))
        .collect();
    let namespaced: Vec<&AIApprovalPolicy> = namespaced
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns))
        .collect();
    if cluster.is_empty() && namespaced.is_empty() {
        return None;
    }
    let mut s = PolicySnapshot {
        quorum: 1,
        ..Default::default()
    };
    let gen_ = |g: Option<i64>| g.unwrap_or(0);
    let mut add = |name: String,
                   rules: &[RiskRule],
                   windows: &[crate::api::ChangeWindow],
                   freezes: &[crate::api::Freeze]| {
        s.sources.push(name.clone());
        if let Some(r) = rules.iter().find(|r| r.risk == risk) {
            s.quorum = s.quorum.max(r.quorum.max(1));
            if !r.users.is_empty() || !r.groups.is_empty() {
                s.allow.push(AllowList {
                    policy: name.clone(),
                    users: r.users.clone(),
                    groups: r.groups.clone(),
                });
            }
        }
        if !windows.is_empty() {
            s.windows.push(PolicyWindows {
                policy: name.clone(),
                windows: windows.to_vec(),
            });
        }
        s.freezes.extend(freezes.iter().cloned());
    };
    for p in &cluster {
        add(
            format!(
                "AIClusterApprovalPolicy/{}@{}",
                p.name_any(),
                gen_(p.metadata.generation)
            ),
            &p.spec.rules,
            &p.spec.windows,
            &p.spec.freezes,
        );
    }
    for p in &namespaced {
        add(
            format!(
                "AIApprovalPolicy/{}/{}@{}",
                ns,
                p.name_any(),
                gen_(p.metadata.generation)
            ),
            &p.spec.rules,
            &p.spec.windows,
            &p.spec.freezes,
        );
    }
    // Pre-approval: only from a cluster policy, never for High, off as soon as a
    // namespaced policy declares a rule for this risk (stricter wins), and only
    // when every step is one the policy names, within its bounds.
    let ns_rule = namespaced
        .iter()
        .any(|p| p.spec.rules.iter().any(|r| r.risk == risk));
    if risk != Risk::High && !ns_rule && !steps.is_empty() {
        s.pre_approved_by = cluster
            .iter()
            .find(|p| {
                steps
                    .iter()
                    .all(|st| p.spec.pre_approve.iter().any(|pa| pre_approves(pa, st)))
            })
            .map(|p| format!("policy/{}", p.name_any()));
    }
    Some(s)
}

/// Whether one pre-approval entry covers one step.
fn pre_approves(pa: &PreApproval, step: &PlanStep) -> bool {
    if pa.max_risk == Risk::High || step.risk == Risk::High || step.risk > pa.max_risk {
        return false;
    }
    if step.tool != pa.tool || !pa.namespaces.contains(&step.target.namespace) {
        return false;
    }
    if step.tool == "scale_deployment" {
        let replicas = step.arguments.get("replicas").and_then(|v| v.as_i64());
        return match (replicas, pa.max_replicas) {
            (Some(r), Some(max)) => r >= 0 && r <= i64::from(max),
            _ => false,
        };
    }
    true
}

/// The stricter of two rule sets: the larger quorum, every allow-list, every
/// window set and freeze, and pre-approval only when both grant it.
pub fn stricter(a: &PolicySnapshot, b: &PolicySnapshot) -> PolicySnapshot {
    fn union<T: Clone + PartialEq>(a: &[T], b: &[T]) -> Vec<T> {
        let mut out = a.to_vec();
        for x in b {
            if !out.contains(x) {
                out.push(x.clone());
            }
        }
        out
    }
    PolicySnapshot {
        sources: union(&a.sources, &b.sources),
        quorum: a.quorum.max(b.quorum),
        allow: union(&a.allow, &b.allow),
        windows: union(&a.windows, &b.windows),
        freezes: union(&a.freezes, &b.freezes),
        pre_approved_by: match (&a.pre_approved_by, &b.pre_approved_by) {
            (Some(x), Some(y)) if x == y => Some(x.clone()),
            _ => None,
        },
    }
}

/// One approval found on the plan or its request, with the identity admission
/// stamped on it and the controller's gate verdict for that identity
/// (verb `approve`, the rights of every step, the plan still hashing to its id).
#[derive(Clone, Debug)]
pub struct Candidate {
    pub who: Option<Requester>,
    pub source: &'static str,
    pub plan_id: String,
    pub gate: Result<(), String>,
}

/// The approvals (with their stamped identities) on a plan and its request,
/// before the gate: the single `spec.approval`, the GitOps `approvedPlanId`
/// and each `spec.approvals` entry.
pub fn approvals_of(
    plan: &AIPlan,
    request: &AIRequest,
    plan_approver: Option<Requester>,
    request_approver: Option<Requester>,
) -> Vec<(Option<Requester>, &'static str, String)> {
    let mut out = vec![];
    if let Some(a) = &plan.spec.approval {
        out.push((plan_approver, SOURCE_PLAN, a.plan_id.clone()));
    }
    if let Some(id) = &request.spec.approved_plan_id {
        out.push((request_approver, SOURCE_GITOPS, id.clone()));
    }
    for e in &plan.spec.approvals {
        let who = e
            .approver
            .as_deref()
            .and_then(|a| serde_json::from_str::<Requester>(a).ok())
            .map(|mut r| {
                if r.uid.as_deref() == Some("") {
                    r.uid = None;
                }
                r
            })
            .filter(|r| !r.username.is_empty());
        out.push((who, SOURCE_PLAN_LIST, e.plan_id.clone()));
    }
    out
}

/// An approval counted towards the quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counted {
    pub user: String,
    pub source: String,
}

/// What the approvals on a plan, under a policy, say.
#[derive(Debug, PartialEq, Eq)]
pub enum QuorumDecision {
    Rejected {
        reason: String,
    },
    Expired,
    /// Not enough distinct approvers yet.
    Waiting {
        counted: Vec<Counted>,
        /// Approvals that do not count, and why (`who: why`).
        refused: Vec<String>,
        /// Approvals of another plan id (`source: id`).
        mismatched: Vec<String>,
    },
    /// Approved, but the change window is closed (or a freeze holds).
    WaitingForWindow {
        counted: Vec<Counted>,
        opens_at: Option<Timestamp>,
        why: String,
    },
    /// Run it.
    Approved {
        counted: Vec<Counted>,
        token: Approved,
    },
}

/// Whether an approver passes every allow-list.
fn allowed(allow: &[AllowList], who: &Requester) -> Result<(), String> {
    for a in allow {
        let ok = a.users.contains(&who.username) || who.groups.iter().any(|g| a.groups.contains(g));
        if !ok {
            return Err(format!(
                "{} is not among the approvers {} names for this risk",
                who.username, a.policy
            ));
        }
    }
    Ok(())
}

/// Decides a plan under approval rules. Pure. The requester's approvals never
/// count (except a configured GitOps identity's: its approval is a reviewed
/// commit); each person counts once (same username or uid); each counted
/// approver passed the gate and every allow-list. Pre-approval stands in for
/// the people only when the rules grant it and the plan is not High risk.
pub fn decide_quorum(
    plan: &AIPlan,
    rules: &PolicySnapshot,
    candidates: &[Candidate],
    requester: Option<&Requester>,
    gitops_identities: &[String],
    now: Timestamp,
) -> QuorumDecision {
    if let Some(r) = &plan.spec.rejection {
        return QuorumDecision::Rejected {
            reason: r.reason.clone(),
        };
    }
    let status = plan.status.clone().unwrap_or_default();
    let id = status.plan_id.clone().unwrap_or_default();
    if status.expires_at.as_ref().is_some_and(|t| t.0 <= now) {
        return QuorumDecision::Expired;
    }
    let mut counted: Vec<(Requester, Counted)> = vec![];
    let (mut refused, mut mismatched) = (vec![], vec![]);
    for c in candidates {
        if id.is_empty() || c.plan_id != id {
            mismatched.push(format!("{}: {}", c.source, c.plan_id));
            continue;
        }
        let Some(who) = &c.who else {
            refused.push(format!(
                "{}: no recorded approver identity (is the admission webhook installed?)",
                c.source
            ));
            continue;
        };
        let verdict = if requester.is_some_and(|r| same_person(r, who))
            && !gitops_identities.contains(&who.username)
        {
            Err(format!(
                "{} requested this plan; the requester's approval never counts",
                who.username
            ))
        } else {
            c.gate.clone().and_then(|()| allowed(&rules.allow, who))
        };
        match verdict {
            Err(why) => refused.push(format!("{} ({}): {why}", who.username, c.source)),
            Ok(()) if counted.iter().any(|(p, _)| same_person(p, who)) => {}
            Ok(()) => counted.push((
                who.clone(),
                Counted {
                    user: who.username.clone(),
                    source: c.source.to_string(),
                },
            )),
        }
    }
    let mut counted: Vec<Counted> = counted.into_iter().map(|(_, c)| c).collect();
    let high = status.risk == Some(Risk::High) || status.steps.iter().any(|s| s.risk == Risk::High);
    if (counted.len() as i32) < rules.quorum.max(1) {
        match &rules.pre_approved_by {
            Some(p) if !high => counted.push(Counted {
                user: p.clone(),
                source: "pre-approval".into(),
            }),
            _ => {
                return QuorumDecision::Waiting {
                    counted,
                    refused,
                    mismatched,
                };
            }
        }
    }
    match window_state(&rules.windows, &rules.freezes, now) {
        WindowState::Open => QuorumDecision::Approved {
            counted,
            token: Approved { _private: () },
        },
        WindowState::Closed { opens_at, why } => QuorumDecision::WaitingForWindow {
            counted,
            opens_at,
            why,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        AIPlanSpec, AIPlanStatus, AIRequestSpec, ApprovalEntry, ChangeWindow, StepTarget,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const ID: &str = "0123456789abcdef";

    fn now() -> Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    fn person(name: &str) -> Requester {
        Requester {
            username: name.into(),
            uid: Some(format!("uid-{name}")),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        }
    }

    fn scale(ns: &str, replicas: i64, risk: Risk) -> PlanStep {
        PlanStep {
            tool: "scale_deployment".into(),
            arguments: serde_json::json!({"name": "web", "replicas": replicas}),
            target: StepTarget {
                namespace: ns.into(),
                ..Default::default()
            },
            risk,
            ..Default::default()
        }
    }

    fn plan(risk: Risk) -> AIPlan {
        let mut p = AIPlan::new("r-1", AIPlanSpec::default());
        p.status = Some(AIPlanStatus {
            plan_id: Some(ID.into()),
            risk: Some(risk),
            steps: vec![scale("dev", 3, risk)],
            expires_at: Some(Time("2026-01-01T13:00:00Z".parse().unwrap())),
            ..Default::default()
        });
        p
    }

    fn cand(who: &str, gate: Result<(), String>) -> Candidate {
        Candidate {
            who: Some(person(who)),
            source: SOURCE_PLAN_LIST,
            plan_id: ID.into(),
            gate,
        }
    }

    fn rules(quorum: i32) -> PolicySnapshot {
        PolicySnapshot {
            quorum,
            ..Default::default()
        }
    }

    fn cluster(
        name: &str,
        spec: crate::api::AIClusterApprovalPolicySpec,
    ) -> AIClusterApprovalPolicy {
        AIClusterApprovalPolicy::new(name, spec)
    }

    fn rule(risk: Risk, quorum: i32) -> RiskRule {
        RiskRule {
            risk,
            quorum,
            ..Default::default()
        }
    }

    fn counted(d: &QuorumDecision) -> Vec<String> {
        match d {
            QuorumDecision::Waiting { counted, .. }
            | QuorumDecision::WaitingForWindow { counted, .. }
            | QuorumDecision::Approved { counted, .. } => {
                counted.iter().map(|c| c.user.clone()).collect()
            }
            _ => vec![],
        }
    }

    #[test]
    fn two_of_m_waits_for_the_second_distinct_approver() {
        let p = plan(Risk::High);
        let alice = person("alice");
        let one = decide_quorum(
            &p,
            &rules(2),
            &[cand("bob", Ok(()))],
            Some(&alice),
            &[],
            now(),
        );
        assert!(matches!(one, QuorumDecision::Waiting { .. }), "{one:?}");
        assert_eq!(counted(&one), ["bob"]);
        // Bob twice (and under his uid with another name) still counts once.
        let mut bob_again = cand("bobby", Ok(()));
        bob_again.who.as_mut().unwrap().uid = Some("uid-bob".into());
        let twice = decide_quorum(
            &p,
            &rules(2),
            &[cand("bob", Ok(())), cand("bob", Ok(())), bob_again],
            Some(&alice),
            &[],
            now(),
        );
        assert!(matches!(twice, QuorumDecision::Waiting { .. }), "{twice:?}");
        let two = decide_quorum(
            &p,
            &rules(2),
            &[cand("bob", Ok(())), cand("carol", Ok(()))],
            Some(&alice),
            &[],
            now(),
        );
        assert!(matches!(two, QuorumDecision::Approved { .. }), "{two:?}");
        assert_eq!(counted(&two), ["bob", "carol"]);
    }

    #[test]
    fn requester_gate_failures_allow_lists_and_wrong_ids_never_count() {
        let p = plan(Risk::High);
        let alice = person("alice");
        let d = decide_quorum(
            &p,
            &rules(1),
            &[cand("alice", Ok(()))],
            Some(&alice),
            &[],
            now(),
        );
        let QuorumDecision::Waiting { refused, .. } = &d else {
            panic!("{d:?}")
        };
        assert!(refused[0].contains("requester"), "{refused:?}");
        let d = decide_quorum(
            &p,
            &rules(1),
            &[cand("mallory", Err("no approve verb".into()))],
            Some(&alice),
            &[],
            now(),
        );
        assert!(matches!(d, QuorumDecision::Waiting { .. }), "{d:?}");
        let mut r = rules(1);
        r.allow.push(AllowList {
            policy: "p".into(),
            groups: vec!["oncall".into()],
            ..Default::default()
        });
        let d = decide_quorum(&p, &r, &[cand("bob", Ok(()))], Some(&alice), &[], now());
        assert!(matches!(d, QuorumDecision::Waiting { .. }), "{d:?}");
        let mut oncall = cand("bob", Ok(()));
        oncall.who.as_mut().unwrap().groups.push("oncall".into());
        assert!(matches!(
            decide_quorum(&p, &r, &[oncall], Some(&alice), &[], now()),
            QuorumDecision::Approved { .. }
        ));
        let mut wrong = cand("bob", Ok(()));
        wrong.plan_id = "ffffffffffffffff".into();
        let d = decide_quorum(&p, &rules(1), &[wrong], Some(&alice), &[], now());
        let QuorumDecision::Waiting { mismatched, .. } = &d else {
            panic!("{d:?}")
        };
        assert_eq!(mismatched.len(), 1);
        // No stamped identity: never counts.
        let mut anon = cand("bob", Ok(()));
        anon.who = None;
        assert!(matches!(
            decide_quorum(&p, &rules(1), &[anon], Some(&alice), &[], now()),
            QuorumDecision::Waiting { .. }
        ));
        // A GitOps identity that applied the request may approve it: the commit is the review.
        let flux = person("flux");
        assert!(matches!(
            decide_quorum(
                &p,
                &rules(1),
                &[cand("flux", Ok(()))],
                Some(&flux),
                &["flux".into()],
                now()
            ),
            QuorumDecision::Approved { .. }
        ));
    }

    #[test]
    fn rejection_and_expiry_win() {
        let mut p = plan(Risk::Low);
        p.spec.rejection = Some(crate::api::Rejection {
            reason: "no".into(),
        });
        assert!(matches!(
            decide_quorum(&p, &rules(1), &[cand("bob", Ok(()))], None, &[], now()),
            QuorumDecision::Rejected { .. }
        ));
        let p = plan(Risk::Low);
        let later = "2026-01-01T14:00:00Z".parse().unwrap();
        assert_eq!(
            decide_quorum(&p, &rules(1), &[cand("bob", Ok(()))], None, &[], later),
            QuorumDecision::Expired
        );
    }

    #[test]
    fn closed_window_waits_after_the_quorum() {
        let p = plan(Risk::Low);
        let mut r = rules(1);
        r.windows.push(PolicyWindows {
            policy: "p".into(),
            windows: vec![ChangeWindow {
                schedule: "0 13 * * *".into(),
                duration: "1h".into(),
                time_zone: None,
            }],
        });
        let d = decide_quorum(&p, &r, &[cand("bob", Ok(()))], None, &[], now());
        let QuorumDecision::WaitingForWindow { opens_at, .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(opens_at, Some("2026-01-01T13:00:00Z".parse().unwrap()));
        assert!(matches!(
            decide_quorum(&p, &r, &[], None, &[], now()),
            QuorumDecision::Waiting { .. }
        ));
    }

    #[test]
    fn pre_approval_only_where_the_cluster_policy_says() {
        use crate::api::AIClusterApprovalPolicySpec as C;
        let pa = PreApproval {
            tool: "scale_deployment".into(),
            namespaces: vec!["dev".into()],
            max_risk: Risk::Low,
            max_replicas: Some(5),
        };
        let c = cluster(
            "safe-dev",
            C {
                pre_approve: vec![pa.clone()],
                ..Default::default()
            },
        );
        let low = [scale("dev", 3, Risk::Low)];
        let s = effective(std::slice::from_ref(&c), &[], "dev", Risk::Low, &low).unwrap();
        assert_eq!(s.pre_approved_by.as_deref(), Some("policy/safe-dev"));
        let d = decide_quorum(&plan(Risk::Low), &s, &[], None, &[], now());
        assert_eq!(counted(&d), ["policy/safe-dev"]);
        assert!(matches!(d, QuorumDecision::Approved { .. }));
        // Out of bounds, another namespace, another tool, higher risk: people approve.
        for (ns, steps, risk) in [
            ("dev", vec![scale("dev", 6, Risk::Low)], Risk::Low),
            ("prod", vec![scale("prod", 3, Risk::Low)], Risk::Low),
            (
                "dev",
                vec![PlanStep {
                    tool: "delete_pod".into(),
                    ..scale("dev", 1, Risk::Low)
                }],
                Risk::Low,
            ),
            ("dev", vec![scale("dev", 3, Risk::Medium)], Risk::Medium),
            ("dev", vec![scale("dev", 0, Risk::High)], Risk::High),
        ] {
            let s = effective(std::slice::from_ref(&c), &[], ns, risk, &steps).unwrap();
            assert_eq!(s.pre_approved_by, None, "{ns} {steps:?}");
        }
        // Even a High pre-approval that got past validation never pre-approves.
        let mut high = pa.clone();
        high.max_risk = Risk::High;
        let c2 = cluster(
            "bad",
            C {
                pre_approve: vec![high],
                ..Default::default()
            },
        );
        assert_eq!(
            effective(
                &[c2],
                &[],
                "dev",
                Risk::High,
                &[scale("dev", 0, Risk::High)]
            )
            .unwrap()
            .pre_approved_by,
            None
        );
        let mut s = rules(1);
        s.pre_approved_by = Some("policy/x".into());
        assert!(matches!(
            decide_quorum(&plan(Risk::High), &s, &[], None, &[], now()),
            QuorumDecision::Waiting { .. }
        ));
        // A namespaced rule for the risk level turns pre-approval off (stricter wins).
        let mut nsp = AIApprovalPolicy::new(
            "ns",
            crate::api::AIApprovalPolicySpec {
                rules: vec![rule(Risk::Low, 1)],
                ..Default::default()
            },
        );
        nsp.metadata.namespace = Some("dev".into());
        assert_eq!(
            effective(&[c], &[nsp], "dev", Risk::Low, &low)
                .unwrap()
                .pre_approved_by,
            None
        );
    }

    #[test]
    fn the_stricter_rule_wins() {
        use crate::api::AIClusterApprovalPolicySpec as C;
        let c = cluster(
            "default",
            C {
                rules: vec![rule(Risk::High, 2)],
                namespaces: vec!["shop".into()],
                ..Default::default()
            },
        );
        let mut nsp = AIApprovalPolicy::new(
            "loose",
            crate::api::AIApprovalPolicySpec {
                rules: vec![rule(Risk::High, 1)],
                ..Default::default()
            },
        );
        nsp.metadata.namespace = Some("shop".into());
        let s = effective(
            std::slice::from_ref(&c),
            std::slice::from_ref(&nsp),
            "shop",
            Risk::High,
            &[],
        )
        .unwrap();
        assert_eq!(s.quorum, 2);
        assert_eq!(s.sources.len(), 2);
        // Not selected namespace / no policy: None (plain gate).
        assert!(effective(std::slice::from_ref(&c), &[], "dev", Risk::High, &[]).is_none());
        // A loosened policy never loosens a snapshot.
        let loosened = stricter(&rules(2), &rules(1));
        assert_eq!(loosened.quorum, 2);
        let mut a = rules(1);
        a.pre_approved_by = Some("policy/x".into());
        assert_eq!(stricter(&a, &rules(1)).pre_approved_by, None);
    }

    #[test]
    fn approvals_are_read_with_their_stamped_identity() {
        let mut p = plan(Risk::High);
        p.spec.approvals = vec![
            ApprovalEntry {
                plan_id: ID.into(),
                approver: Some(r#"{"username":"bob","uid":"","groups":["g"]}"#.into()),
                ..Default::default()
            },
            ApprovalEntry {
                plan_id: ID.into(),
                approver: None,
                ..Default::default()
            },
        ];
        let r = AIRequest::new(
            "r",
            AIRequestSpec {
                prompt: "x".into(),
                ..Default::default()
            },
        );
        let a = approvals_of(&p, &r, None, None);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].0.as_ref().unwrap().username, "bob");
        assert_eq!(a[0].0.as_ref().unwrap().uid, None);
        assert!(a[1].0.is_none());
    }
}
