//! Every transition of [`decide`], table-driven: given a request, its plan,
//! the time and the gate's verdict, the expected decision. No API server.

use super::*;
use crate::api::{AIPlanSpec, Approval, Mode, Rejection};
use crate::controller::conditions::plan_conditions;

const ID: &str = "0123456789abcdef";
const NOW: &str = "2026-01-01T00:00:00Z";
const LATER: &str = "2026-01-01T01:00:00Z";
const EARLIER: &str = "2025-12-31T23:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn identity(user: &str) -> String {
    serde_json::json!({ "username": user }).to_string()
}

/// A request in `phase` (its conditions as the operator writes them), planned
/// as plan `r-1` unless `plan_ref` is `None`.
fn request(phase: RequestPhase, plan_ref: Option<&str>) -> AIRequest {
    let mut r = AIRequest::new(
        "r",
        AIRequestSpec {
            prompt: "scale web to 3".into(),
            ..Default::default()
        },
    );
    r.metadata.namespace = Some("shop".into());
    r.metadata.generation = Some(1);
    r.metadata.annotations = Some(
        [(
            crate::safety::authz::REQUESTER_ANNOTATION.to_string(),
            identity("alice"),
        )]
        .into(),
    );
    r.status = Some(AIRequestStatus {
        phase: Some(phase),
        input_digest: Some(input_digest(&r.spec, "shop")),
        plan_ref: plan_ref.map(String::from),
        plan_id: plan_ref.map(|_| ID.to_string()),
        conditions: request_conditions(&[], phase, "Why", "msg", Some(1)),
        observed_generation: Some(1),
        ..Default::default()
    });
    r
}

fn step() -> crate::api::PlanStep {
    serde_json::from_value(serde_json::json!({
        "tool": "scale_deployment",
        "arguments": {"name": "web", "replicas": 3},
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"},
        "risk": "Low",
        "reason": "scale web to 3",
        "before": {},
        "rollback": "kubectl scale deployment web --replicas=1",
        "state": "Pending",
    }))
    .unwrap()
}

/// Plan `r-1` in `phase`, expiring at `expires`.
fn plan(phase: PlanPhase, expires: &str) -> AIPlan {
    let mut p = AIPlan::new("r-1", AIPlanSpec::default());
    p.metadata.namespace = Some("shop".into());
    p.metadata.generation = Some(1);
    p.status = Some(AIPlanStatus {
        phase: Some(phase),
        plan_id: Some(ID.into()),
        request: Some("r".into()),
        steps: vec![step()],
        expires_at: Some(Time(expires.parse().unwrap())),
        conditions: plan_conditions(&[], phase, "Why", "plan msg", Some(1)),
        observed_generation: Some(1),
        ..Default::default()
    });
    p
}

fn approved_by(mut p: AIPlan, user: &str) -> AIPlan {
    p.spec.approval = Some(Approval {
        plan_id: ID.into(),
        comment: None,
    });
    p.metadata.generation = Some(2);
    p.metadata.annotations = Some([(APPROVED_BY_ANNOTATION.to_string(), identity(user))].into());
    p
}

fn recorded_approval(mut p: AIPlan) -> AIPlan {
    let ps = p.status.as_mut().unwrap();
    ps.approved_at = Some(Time(now()));
    ps.approved_by = Some("bob via AIPlan spec.approval.planId".into());
    p
}

/// A decision in one line, to compare with the table.
fn summary(d: &Decision) -> String {
    let phase = |p: Option<String>| p.unwrap_or_else(|| "-".into());
    match d {
        Decision::Observe(Need::Plan(n)) => format!("observe plan {n}"),
        Decision::Observe(Need::Gate(a)) => format!(
            "observe gate {}",
            a.as_ref().map_or("-", |a| a.username.as_str())
        ),
        Decision::Observe(Need::Policy) => "observe policy".into(),
        Decision::Plan => "plan".into(),
        Decision::Delete => "delete".into(),
        Decision::Finish(f) => format!("finish {:?} {}", f.phase, f.reason),
        Decision::Update(u) => format!(
            "notes=[{}] plan={} request={} then={}",
            u.notes
                .iter()
                .map(|n| format!(
                    "{}:{}",
                    if n.type_ == NoteType::Warning {
                        "W"
                    } else {
                        "N"
                    },
                    n.reason
                ))
                .collect::<Vec<_>>()
                .join(","),
            phase(u.plan.as_ref().map(|p| format!("{:?}", p.phase.unwrap()))),
            phase(
                u.request
                    .as_ref()
                    .map(|r| format!("{:?}", r.phase.unwrap()))
            ),
            match &u.then {
                Next::AwaitChange => "await".to_string(),
                Next::Final => "final".into(),
                Next::Until(t) => format!("until {t}"),
                Next::After(d) => format!("after {}s", d.as_secs()),
                Next::Execute(e) => format!("execute {:?}", e.plan.phase.unwrap()),
                Next::Retry(_) => "retry".into(),
            }
        ),
    }
}

struct Case {
    name: &'static str,
    request: AIRequest,
    /// `None`: not read yet; `Some(None)`: deleted.
    plan: Option<Option<AIPlan>>,
    gate: Option<Result<(), String>>,
    ttl: Option<Duration>,
    expected: &'static str,
}

fn case(
    name: &'static str,
    request: AIRequest,
    plan: Option<AIPlan>,
    expected: &'static str,
) -> Case {
    Case {
        name,
        request,
        plan: plan.map(Some),
        gate: None,
        ttl: None,
        expected,
    }
}

fn cases_without_plan() -> Vec<Case> {
    use RequestPhase as R;
    let mut changed = request(R::Answered, None);
    changed.spec.prompt = "scale web to 4".into();
    let mut gitops_without_plan = request(R::Answered, None);
    gitops_without_plan.spec.approved_plan_id = Some(ID.into());
    gitops_without_plan.metadata.generation = Some(2);
    vec![
        case("inputs changed: plan", changed, None, "plan"),
        Case {
            ttl: Some(Duration::from_secs(60)),
            ..case(
                "final, TTL passed: delete",
                {
                    let mut r = request(R::Answered, None);
                    let c = &mut r.status.as_mut().unwrap().conditions[0];
                    c.last_transition_time = Time(EARLIER.parse().unwrap());
                    r
                },
                None,
                "delete",
            )
        },
        Case {
            ttl: Some(Duration::from_secs(7200)),
            ..case(
                "final, TTL not yet: look again when due",
                {
                    let mut r = request(R::Answered, None);
                    let c = &mut r.status.as_mut().unwrap().conditions[0];
                    c.last_transition_time = Time(EARLIER.parse().unwrap());
                    r
                },
                None,
                "notes=[] plan=- request=- then=after 1800s",
            )
        },
        case(
            "no plan, nothing new",
            request(R::Answered, None),
            None,
            "notes=[] plan=- request=- then=final",
        ),
        case(
            "no plan, approvedPlanId set: warn and record the generation",
            gitops_without_plan,
            None,
            "notes=[W:ApprovalMismatch] plan=- request=Answered then=final",
        ),
    ]
}

fn cases_with_plan() -> Vec<Case> {
    use PlanPhase as P;
    use RequestPhase as R;
    let mut other_id = plan(P::AwaitingApproval, LATER);
    other_id.spec.approval = Some(Approval {
        plan_id: "ffffffffffffffff".into(),
        comment: None,
    });
    let mut refused_already = other_id.clone();
    refused_already
        .status
        .as_mut()
        .unwrap()
        .last_mismatched_plan_id = Some("ffffffffffffffff".into());
    let mut rejected = plan(P::AwaitingApproval, LATER);
    rejected.spec.rejection = Some(Rejection {
        reason: "not now".into(),
    });
    let mut approved_mode = request(R::AwaitingApproval, Some("r-1"));
    approved_mode.spec.mode = Some(Mode::Plan);
    vec![
        Case {
            plan: None,
            ..case(
                "plan not read yet: read it",
                request(R::AwaitingApproval, Some("r-1")),
                None,
                "observe plan r-1",
            )
        },
        Case {
            plan: Some(None),
            ..case(
                "plan deleted before it finished: request fails",
                request(R::AwaitingApproval, Some("r-1")),
                None,
                "notes=[W:Failed] plan=- request=Failed then=await",
            )
        },
        Case {
            plan: Some(None),
            ..case(
                "plan deleted after it finished: nothing",
                request(R::Succeeded, Some("r-1")),
                None,
                "notes=[] plan=- request=- then=await",
            )
        },
        case(
            "awaiting, no approval: wait until expiry",
            request(R::AwaitingApproval, Some("r-1")),
            Some(plan(P::AwaitingApproval, LATER)),
            "notes=[] plan=- request=- then=until 2026-01-01T01:00:00Z",
        ),
        case(
            "awaiting, another id: refuse once, wait",
            request(R::AwaitingApproval, Some("r-1")),
            Some(other_id),
            "notes=[W:ApprovalMismatch,W:ApprovalMismatch] plan=AwaitingApproval request=- then=until 2026-01-01T01:00:00Z",
        ),
        case(
            "awaiting, the same wrong id again: no second warning",
            request(R::AwaitingApproval, Some("r-1")),
            Some(refused_already),
            "notes=[] plan=- request=- then=until 2026-01-01T01:00:00Z",
        ),
        case(
            "awaiting, rejected",
            request(R::AwaitingApproval, Some("r-1")),
            Some(rejected),
            "finish Rejected Rejected",
        ),
        case(
            "awaiting, expired",
            request(R::AwaitingApproval, Some("r-1")),
            Some(plan(P::AwaitingApproval, EARLIER)),
            "finish Expired Expired",
        ),
        case(
            "awaiting, exact id: check the gate",
            approved_mode.clone(),
            Some(approved_by(plan(P::AwaitingApproval, LATER), "bob")),
            "observe gate bob",
        ),
        Case {
            gate: Some(Err("bob may not approve".into())),
            ..case(
                "awaiting, exact id, gate refuses: refuse once, wait",
                approved_mode.clone(),
                Some(approved_by(plan(P::AwaitingApproval, LATER), "bob")),
                "notes=[W:ApprovalMismatch,W:ApprovalMismatch] plan=AwaitingApproval request=- then=until 2026-01-01T01:00:00Z",
            )
        },
        Case {
            gate: Some(Ok(())),
            ..case(
                "awaiting, exact id, gate passes: approve and execute",
                approved_mode,
                Some(approved_by(plan(P::AwaitingApproval, LATER), "bob")),
                "notes=[N:Approved,N:Approved] plan=- request=Executing then=execute Approved",
            )
        },
        case(
            "executing with a recorded approval: resume",
            request(R::Executing, Some("r-1")),
            Some(recorded_approval(plan(P::Executing, LATER))),
            "notes=[] plan=- request=- then=execute Executing",
        ),
        case(
            "executing without an approval: fail",
            request(R::Executing, Some("r-1")),
            Some(plan(P::Executing, LATER)),
            "finish Failed Failed",
        ),
        case(
            "rolling back with a recorded approval (restart mid-rollback): resume the rollback",
            request(R::Executing, Some("r-1")),
            Some(recorded_approval(plan(P::RollingBack, LATER))),
            "notes=[] plan=- request=- then=execute RollingBack",
        ),
        case(
            "rolling back without an approval: fail, undo nothing",
            request(R::Executing, Some("r-1")),
            Some(plan(P::RollingBack, LATER)),
            "finish Failed Failed",
        ),
    ]
}

fn cases_finished_plan() -> Vec<Case> {
    use PlanPhase as P;
    use RequestPhase as R;
    let mut seen_later = plan(P::Succeeded, LATER);
    seen_later.metadata.generation = Some(2);
    vec![
        case(
            "plan succeeded, request not final (crash between writes): report and mirror",
            request(R::Executing, Some("r-1")),
            Some(recorded_approval(plan(P::Succeeded, LATER))),
            "notes=[N:Why,N:Why] plan=- request=Succeeded then=final",
        ),
        case(
            "plan failed, request not final: warn and mirror",
            request(R::Executing, Some("r-1")),
            Some(plan(P::Failed, LATER)),
            "notes=[W:Why,W:Why] plan=- request=Failed then=final",
        ),
        case(
            "plan rolled back, request not final: warn and mirror RolledBack",
            request(R::Executing, Some("r-1")),
            Some(recorded_approval(plan(P::RolledBack, LATER))),
            "notes=[W:Why,W:Why] plan=- request=RolledBack then=final",
        ),
        case(
            "plan rejected, request not final: mirror",
            request(R::AwaitingApproval, Some("r-1")),
            Some(plan(P::Rejected, LATER)),
            "notes=[W:Why,W:Why] plan=- request=Rejected then=final",
        ),
        case(
            "plan expired, request final: nothing new",
            request(R::Expired, Some("r-1")),
            Some(plan(P::Expired, LATER)),
            "notes=[] plan=- request=Expired then=final",
        ),
        case(
            "plan superseded: the request is not its to mirror",
            request(R::AwaitingApproval, Some("r-1")),
            Some(plan(P::Superseded, LATER)),
            "notes=[] plan=- request=- then=final",
        ),
        case(
            "finished plan edited later: record that it was seen",
            request(R::Succeeded, Some("r-1")),
            Some(seen_later),
            "notes=[] plan=Succeeded request=Succeeded then=final",
        ),
    ]
}

#[test]
fn every_transition() {
    for c in cases_without_plan()
        .into_iter()
        .chain(cases_with_plan())
        .chain(cases_finished_plan())
    {
        let digest = input_digest(&c.request.spec, "shop");
        let obs = Observed {
            request: &c.request,
            digest,
            now: now(),
            plan: c.plan,
            gate: c.gate,
            finished_ttl: c.ttl,
            gitops_identities: &[],
            policy: Some(Default::default()),
        };
        assert_eq!(summary(&decide(&obs)), c.expected, "{}", c.name);
    }
}

#[test]
fn approval_records_who_and_uses_the_id_once() {
    let req = request(RequestPhase::AwaitingApproval, Some("r-1"));
    let p = approved_by(plan(PlanPhase::AwaitingApproval, LATER), "bob");
    let gitops = ["bob".to_string()];
    let obs = Observed {
        request: &req,
        digest: input_digest(&req.spec, "shop"),
        now: now(),
        plan: Some(Some(p)),
        gate: Some(Ok(())),
        finished_ttl: None,
        gitops_identities: &gitops,
        policy: Some(Default::default()),
    };
    let Decision::Update(u) = decide(&obs) else {
        panic!("not an update")
    };
    let u = *u;
    let rs = u.request.unwrap();
    assert_eq!(rs.used_plan_ids, [ID]);
    assert_eq!(u.counts, [Count::Plan("Approved")]);
    let Next::Execute(e) = u.then else {
        panic!("does not execute")
    };
    let by = e.plan.approved_by.unwrap();
    assert!(
        by.starts_with("bob via AIPlan spec.approval.planId, a reviewed commit"),
        "{by}"
    );
    assert_eq!(e.plan.approved_at, Some(Time(now())));
}

#[test]
fn finish_skips_unrun_steps_only_when_nothing_ran() {
    let ps = plan(PlanPhase::AwaitingApproval, LATER).status.unwrap();
    let rejected =
        Finish::new(PlanPhase::Rejected, reason::REJECTED, "no").plan_status(ps.clone(), Some(2));
    assert_eq!(rejected.steps[0].state, StepState::Skipped);
    assert_eq!(rejected.observed_generation, Some(2));
    let failed = Finish::new(PlanPhase::Failed, reason::FAILED, "x").plan_status(ps, Some(2));
    assert_eq!(failed.steps[0].state, StepState::Pending);
    assert_eq!(
        Finish::new(PlanPhase::Rejected, reason::REJECTED, "no").note_type(),
        NoteType::Normal
    );
    let done = Finish::of_execution(execute::ExecOutcome::Succeeded, &failed);
    assert_eq!(done.message, "scale web to 3 (1 step(s) succeeded)");
    assert_eq!(done.note_type(), NoteType::Normal);
    let drift = Finish::of_execution(execute::ExecOutcome::Drifted("d".into()), &failed);
    assert_eq!(
        (drift.phase, drift.reason),
        (PlanPhase::Failed, reason::DRIFTED)
    );
}

#[test]
fn final_request_mirrors_the_plan_and_uses_its_id() {
    let req = request(RequestPhase::Executing, Some("r-1"));
    let ps = recorded_approval(plan(PlanPhase::Succeeded, LATER))
        .status
        .unwrap();
    let s = final_request(&req, &ps, req.status.clone().unwrap()).unwrap();
    assert_eq!(s.phase, Some(RequestPhase::Succeeded));
    assert_eq!(s.used_plan_ids, [ID]);
    assert!(s.answer.unwrap().starts_with("✅ Done: plan msg"));
    let superseded_ps = plan(PlanPhase::Superseded, LATER).status.unwrap();
    assert!(final_request(&req, &superseded_ps, AIRequestStatus::default()).is_none());
}

#[test]
fn open_plans_are_superseded_finished_ones_not() {
    let u = superseded(&plan(PlanPhase::AwaitingApproval, LATER)).unwrap();
    assert_eq!(u.plan.unwrap().phase, Some(PlanPhase::Superseded));
    assert_eq!(u.counts, [Count::Plan("Superseded")]);
    assert!(superseded(&plan(PlanPhase::Succeeded, LATER)).is_none());
}

#[test]
fn plan_names_count_up() {
    assert_eq!(next_plan_name("r", None), "r-1");
    assert_eq!(next_plan_name("r", Some("r-7")), "r-8");
    assert_eq!(next_plan_name(&"x".repeat(300), None).len(), 242);
}

#[test]
fn digest_ignores_approval_but_not_inputs() {
    let spec = AIRequestSpec {
        prompt: "scale nginx to 5".into(),
        ..Default::default()
    };
    let d = input_digest(&spec, "shop");
    let approved = AIRequestSpec {
        approved_plan_id: Some("0123456789abcdef".into()),
        ..spec.clone()
    };
    assert_eq!(d, input_digest(&approved, "shop"));
    // Defaults are the same request as their explicit values.
    let explicit = AIRequestSpec {
        target_namespace: Some("shop".into()),
        mode: Some(Mode::Plan),
        rollback: Some(crate::api::RollbackPolicy::Auto),
        ..spec.clone()
    };
    assert_eq!(d, input_digest(&explicit, "shop"));
    for changed in [
        AIRequestSpec {
            rollback: Some(crate::api::RollbackPolicy::Never),
            ..spec.clone()
        },
        AIRequestSpec {
            prompt: "scale nginx to 6".into(),
            ..spec.clone()
        },
        AIRequestSpec {
            target_namespace: Some("other".into()),
            ..spec.clone()
        },
        AIRequestSpec {
            mode: Some(Mode::ReadOnly),
            ..spec.clone()
        },
        AIRequestSpec {
            model: Some("m".into()),
            ..spec.clone()
        },
        AIRequestSpec {
            conversation: Some("c".into()),
            ..spec.clone()
        },
    ] {
        assert_ne!(d, input_digest(&changed, "shop"), "{changed:?}");
    }
}

/// The policy path: a plan awaiting approval under rules (`decide/policy.rs`).
mod policies {
    use super::*;
    use crate::api::{ChangeWindow, PolicySnapshot, PolicyWindows, WAITING_FOR_WINDOW};
    use crate::approval::{Candidate, SOURCE_PLAN_LIST};
    use crate::controller::decide::policy::PolicyView;

    fn person(name: &str) -> Requester {
        Requester {
            username: name.into(),
            uid: None,
            groups: vec![],
            ..Default::default()
        }
    }

    fn view(quorum: i32, who: &[&str]) -> PolicyView {
        PolicyView {
            rules: Some(PolicySnapshot {
                quorum,
                sources: vec!["AIClusterApprovalPolicy/default@1".into()],
                ..Default::default()
            }),
            candidates: who
                .iter()
                .map(|w| Candidate {
                    who: Some(person(w)),
                    source: SOURCE_PLAN_LIST,
                    plan_id: ID.into(),
                    gate: Ok(()),
                })
                .collect(),
            requester: Some(person("alice")),
        }
    }

    fn decide_with(v: Option<PolicyView>) -> Decision {
        let req = request(RequestPhase::AwaitingApproval, Some("r-1"));
        let obs = Observed {
            request: &req,
            digest: input_digest(&req.spec, "shop"),
            now: now(),
            plan: Some(Some(plan(PlanPhase::AwaitingApproval, LATER))),
            gate: None,
            finished_ttl: None,
            gitops_identities: &[],
            policy: v,
        };
        decide(&obs)
    }

    #[test]
    fn policies_are_read_before_an_awaiting_plan_is_decided() {
        assert!(matches!(decide_with(None), Decision::Observe(Need::Policy)));
    }

    #[test]
    fn below_the_quorum_the_plan_waits_and_records_who_counted() {
        let Decision::Update(u) = decide_with(Some(view(2, &["bob", "alice"]))) else {
            panic!("not an update")
        };
        let ps = u.plan.expect("plan status");
        assert_eq!(ps.approvals_required, Some(2));
        let users: Vec<&str> = ps.approvals.iter().map(|a| a.user.as_str()).collect();
        assert_eq!(users, ["bob"]);
        let ready = ps.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert!(
            ready.message.starts_with("1/2 approvals (bob)"),
            "{}",
            ready.message
        );
        assert!(matches!(u.then, Next::Until(_)));
        assert!(
            u.notes
                .iter()
                .any(|n| n.reason == crate::api::APPROVAL_COUNTED)
        );
    }

    #[test]
    fn at_the_quorum_it_runs_and_names_every_approver() {
        let Decision::Update(u) = decide_with(Some(view(2, &["bob", "carol"]))) else {
            panic!("not an update")
        };
        let Next::Execute(e) = u.then else {
            panic!("not executed")
        };
        let by = e.plan.approved_by.unwrap();
        assert!(
            by.contains("bob") && by.contains("carol") && by.contains("2/2"),
            "{by}"
        );
        assert_eq!(e.plan.phase, Some(PlanPhase::Approved));
    }

    #[test]
    fn a_closed_window_waits_until_it_opens() {
        let mut v = view(1, &["bob"]);
        v.rules.as_mut().unwrap().windows = vec![PolicyWindows {
            policy: "p".into(),
            windows: vec![ChangeWindow {
                schedule: "30 0 * * *".into(),
                duration: "1h".into(),
                time_zone: None,
            }],
        }];
        let Decision::Update(u) = decide_with(Some(v)) else {
            panic!("not an update")
        };
        let opens: Timestamp = "2026-01-01T00:30:00Z".parse().unwrap();
        assert!(matches!(u.then, Next::Until(t) if t == opens));
        let ps = u.plan.unwrap();
        assert_eq!(ps.window_opens_at, Some(Time(opens)));
        assert!(
            ps.conditions
                .iter()
                .any(|c| c.type_ == WAITING_FOR_WINDOW && c.status == "True")
        );
        assert_eq!(ps.phase, Some(PlanPhase::AwaitingApproval));
    }

    #[test]
    fn pre_approval_is_recorded_as_the_policy() {
        let mut v = view(1, &[]);
        v.rules.as_mut().unwrap().pre_approved_by = Some("policy/safe".into());
        let Decision::Update(u) = decide_with(Some(v)) else {
            panic!("not an update")
        };
        let Next::Execute(e) = u.then else {
            panic!("not executed")
        };
        assert_eq!(e.plan.approved_by.as_deref(), Some("policy/safe"));
    }
}
