//! Diagnosis accuracy: runs the builtin diagnostician over the broken situations of
//! `examples/diagnosis/cases.yaml` (data: objects with status + a question + the expected root
//! cause and fix) and writes the scores to `docs/accuracy/diagnosis.md`.
//!
//! The question goes through the builtin planner's own parser (which object it names), then the
//! same analyzers the `diagnose` tool runs on a live snapshot. A case is right on root cause when
//! the first finding has the expected condition and its cause names the expected phrase; right on
//! fix when the proposed step is the expected one (or none is proposed where none is certain).
//!
//! `DIAGNOSIS_RESULTS=-` prints instead of writing; `DIAGNOSIS_FLOOR=90` fails below that
//! root-cause percentage (`make test` uses it). `DIAGNOSIS_LLM_URL` (an OpenAI-compatible `/v1`)
//! also scores a model (`DIAGNOSIS_LLM_MODEL`): it gets every tool, `diagnose` answers from the
//! case's fixture (the compact form the operator sends), other tools answer "no data"; it is right
//! on root cause when it called `diagnose` and its answer names the expected cause (the phrase or
//! the condition), right on fix when it planned `patch_resource` exactly where a fix is certain.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kubilitics_ai::agent::intent::{Action, parse};
use kubilitics_ai::diagnose::{Snapshot, analyze, analyze_for};
use kubilitics_ai::tools::Mutation;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Case {
    question: String,
    namespace: String,
    objects: Vec<serde_json::Value>,
    #[serde(default)]
    logs: BTreeMap<String, String>,
    expect: Expect,
}

#[derive(Deserialize)]
struct Expect {
    condition: String,
    cause: String,
    fix: String,
}

fn snapshot(c: &Case) -> anyhow::Result<Snapshot> {
    let mut s = Snapshot {
        namespace: c.namespace.clone(),
        configmaps: Some(vec![]),
        logs: c.logs.clone(),
        ..Default::default()
    };
    for o in &c.objects {
        let mut o = o.clone();
        o["metadata"]["namespace"] = c.namespace.clone().into();
        let v = o.clone();
        match o["kind"].as_str().unwrap_or_default() {
            "Pod" => s.pods.push(serde_json::from_value(v)?),
            "Deployment" => s.deployments.push(serde_json::from_value(v)?),
            "ReplicaSet" => s.replicasets.push(serde_json::from_value(v)?),
            "Service" => s.services.push(serde_json::from_value(v)?),
            "Event" => s.events.push(serde_json::from_value(v)?),
            "PersistentVolumeClaim" => s.pvcs.push(serde_json::from_value(v)?),
            "Job" => s.jobs.push(serde_json::from_value(v)?),
            "HorizontalPodAutoscaler" => s.hpas.push(serde_json::from_value(v)?),
            "ConfigMap" => s
                .configmaps
                .get_or_insert_with(Vec::new)
                .push(v["metadata"]["name"].as_str().unwrap_or_default().into()),
            k => anyhow::bail!("unknown kind {k} in case {:?}", c.question),
        }
    }
    // EndpointSlices as the endpoints controller would write them: ready pods the selector matches.
    for svc in &s.services {
        let sel = svc
            .spec
            .as_ref()
            .and_then(|sp| sp.selector.clone())
            .unwrap_or_default();
        let ready = s
            .pods
            .iter()
            .filter(|p| !sel.is_empty() && sel.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
            .filter(|p| {
                let cs = p
                    .status
                    .as_ref()
                    .and_then(|st| st.container_statuses.clone())
                    .unwrap_or_default();
                !cs.is_empty() && cs.iter().all(|c| c.ready)
            })
            .count();
        s.ready_endpoints.insert(svc.name_any(), ready);
    }
    Ok(s)
}

struct Row {
    question: String,
    want: String,
    got: String,
    cause_ok: bool,
    fix_ok: bool,
}

/// What a model did with one case: (right root cause, right fix, what it said).
async fn llm_case(url: &str, model: &str, c: &Case) -> anyhow::Result<(bool, bool, String)> {
    use kubilitics_ai::agent::{prompt::first_messages, schema::tool_specs};
    let s = snapshot(c)?;
    let http = reqwest::Client::new();
    let tools: Vec<Value> = tool_specs().into_iter().map(|t| t.function).collect();
    let mut messages = first_messages(
        &c.namespace,
        kubilitics_ai::api::Mode::Plan,
        &[],
        &c.question,
        None,
    );
    let (mut called, mut patched, mut other_change) = (false, false, false);
    let mut answer = String::new();
    for _ in 0..4 {
        let body = json!({
            "model": model, "temperature": 0.1, "max_tokens": 300, "stream": false,
            "tool_choice": "auto", "tools": tools, "messages": messages,
        });
        let resp = http
            .post(format!("{url}/chat/completions"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body)?)
            .send()
            .await?;
        let resp: Value = serde_json::from_slice(&resp.bytes().await?)?;
        let msg = resp
            .pointer("/choices/0/message")
            .cloned()
            .unwrap_or(Value::Null);
        let calls = msg["tool_calls"].as_array().cloned().unwrap_or_default();
        if calls.is_empty() {
            answer = msg["content"].as_str().unwrap_or("").to_string();
            break;
        }
        messages.push(msg.clone());
        for call in calls {
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let args: Value = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or(json!({}));
            let result = match name {
                "diagnose" => {
                    called = true;
                    let mut f = analyze_for(&s, args["name"].as_str());
                    if f.is_empty() {
                        f = analyze(&s);
                    }
                    kubilitics_ai::diagnose::render_compact(&f)
                }
                "patch_resource" => {
                    patched = true;
                    "Added to the plan; a human must approve it.".into()
                }
                "scale_deployment" | "rollout_restart" | "delete_pod" | "create_configmap"
                | "apply_manifest" => {
                    other_change = true;
                    "Added to the plan; a human must approve it.".into()
                }
                _ => "(no data in the accuracy run)".into(),
            };
            messages.push(json!({"role": "tool", "tool_call_id": call["id"].as_str().unwrap_or("call"), "content": result}));
        }
    }
    let a = answer.to_lowercase();
    let cause_ok = called
        && (a.contains(&c.expect.cause.to_lowercase())
            || a.contains(&c.expect.condition.to_lowercase()));
    let fix_ok = !other_change && (patched == (c.expect.fix == "patch_resource"));
    Ok((cause_ok, fix_ok, answer))
}

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases: Vec<Case> = serde_norway::from_str(&std::fs::read_to_string(
        root.join("examples/diagnosis/cases.yaml"),
    )?)?;
    // The set must not repeat the unit tests' questions.
    let unit = std::fs::read_to_string(root.join("src/diagnose/tests.rs"))?;
    for c in &cases {
        anyhow::ensure!(
            !unit.contains(c.question.lines().next().unwrap_or_default()),
            "case {:?} is a unit test's question",
            c.question
        );
    }
    let mut rows = vec![];
    for c in &cases {
        let s = snapshot(c)?;
        let intents = parse(&c.question);
        let routed = intents.len() == 1 && intents[0].action == Action::Diagnose;
        let name = intents.first().and_then(|i| i.name.clone());
        let mut findings = analyze_for(&s, name.as_deref());
        if findings.is_empty() && name.is_some() {
            findings = analyze(&s);
        }
        let first = findings.first();
        let cause_ok = routed
            && first.is_some_and(|f| {
                f.condition.label() == c.expect.condition
                    && f.cause
                        .to_lowercase()
                        .contains(&c.expect.cause.to_lowercase())
            });
        let proposed = findings.iter().find_map(|f| f.fix.clone());
        let fix_ok = matches!(
            (c.expect.fix.as_str(), &proposed),
            ("none", None) | ("patch_resource", Some(Mutation::PatchResource { .. }))
        );
        rows.push(Row {
            question: c.question.lines().next().unwrap_or_default().to_string(),
            want: format!(
                "{} ({}), fix {}",
                c.expect.condition, c.expect.cause, c.expect.fix
            ),
            got: match first {
                Some(f) => format!(
                    "{}{} {}: {}, fix {}",
                    if routed {
                        ""
                    } else {
                        "[not routed to diagnose] "
                    },
                    f.condition.label(),
                    f.object,
                    f.cause,
                    proposed.as_ref().map(|m| m.tool_name()).unwrap_or("none")
                ),
                None => "no finding".into(),
            },
            cause_ok,
            fix_ok,
        });
    }
    let model_line = match std::env::var("DIAGNOSIS_LLM_URL") {
        Ok(url) => {
            let model =
                std::env::var("DIAGNOSIS_LLM_MODEL").unwrap_or_else(|_| "local".into());
            let rt = tokio::runtime::Runtime::new()?;
            let (mut mc, mut mf) = (0, 0);
            let started = std::time::Instant::now();
            for c in &cases {
                let (a, b, said) = rt.block_on(llm_case(&url, &model, c))?;
                mc += a as usize;
                mf += b as usize;
                if !a {
                    eprintln!("model miss: {} -> {}", c.question.lines().next().unwrap_or_default(), said.replace('\n', " "));
                }
            }
            let n = cases.len();
            format!(
                "| {model} (local, OpenAI-compatible) | {mc}/{n} ({:.0} %) | {mf}/{n} ({:.0} %) |\n\nModel run: {:.0} s for {n} cases.\n",
                100.0 * mc as f64 / n as f64,
                100.0 * mf as f64 / n as f64,
                started.elapsed().as_secs_f64()
            )
        }
        Err(_) => "\nThe local model was not measured in this run (set DIAGNOSIS_LLM_URL; `make accuracy` does).\n".into(),
    };
    let n = rows.len();
    let causes = rows.iter().filter(|r| r.cause_ok).count();
    let fixes = rows.iter().filter(|r| r.fix_ok).count();
    let pct = |k: usize| 100.0 * k as f64 / n as f64;
    let mut out = format!(
        "# Diagnosis accuracy\n\nWritten by `cargo run --example diagnosis` (`make accuracy`) from \
         `examples/diagnosis/cases.yaml`: {n} broken situations, each a fixture and a question.\n\n\
         | planner | right root cause | right fix step (or none where none is certain) |\n|---|---|---|\n\
         | builtin | {causes}/{n} ({:.0} %) | {fixes}/{n} ({:.0} %) |\n{model_line}\n\
         Builtin, per case:\n\n| # | question | expected | first finding | cause | fix |\n|---|---|---|---|---|---|\n",
        pct(causes),
        pct(fixes)
    );
    for (i, r) in rows.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            i + 1,
            r.question.replace('|', "\\|"),
            r.want.replace('|', "\\|"),
            kubilitics_ai::api::truncate(&r.got.replace('|', "\\|").replace('\n', " "), 200),
            if r.cause_ok { "✅" } else { "❌" },
            if r.fix_ok { "✅" } else { "❌" }
        ));
    }
    match std::env::var("DIAGNOSIS_RESULTS").as_deref() {
        Ok("-") => print!("{out}"),
        _ => {
            std::fs::write(root.join("docs/accuracy/diagnosis.md"), &out)?;
            println!(
                "builtin diagnosis: root cause {causes}/{n}, fix {fixes}/{n} -> docs/accuracy/diagnosis.md"
            );
        }
    }
    if let Ok(floor) = std::env::var("DIAGNOSIS_FLOOR") {
        let floor: f64 = floor.parse()?;
        anyhow::ensure!(
            pct(causes) >= floor,
            "root cause {:.0} % < floor {floor} %",
            pct(causes)
        );
    }
    for r in rows.iter().filter(|r| !r.cause_ok || !r.fix_ok) {
        eprintln!("miss: {} -> {}", r.question, r.got);
    }
    Ok(())
}
