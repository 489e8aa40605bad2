//! Planner accuracy, measured on data: the cases in `examples/accuracy/cases.yaml`
//! (requests as people write them, with the steps a correct planner takes) run
//! through the builtin planner and, when `ACCURACY_LLM_URL` is set (an
//! OpenAI-compatible `/v1` base URL), through a model with the same tool schemas
//! the operator sends. Prints the score per class (single action, several
//! actions or a conversation, refuse or ask, read-only questions) and writes
//! `docs/accuracy/results.md`.
//!
//! Environment:
//! - `ACCURACY_BUILTIN_ONLY=1`: no model, even if `ACCURACY_LLM_URL` is set.
//! - `ACCURACY_FLOOR_FILE=docs/accuracy/floor.txt`: exit non-zero when the
//!   builtin planner passes fewer cases of a class than recorded there;
//!   `ACCURACY_FLOOR_UPDATE=1` records the current scores instead.
//! - `ACCURACY_RESULTS=<path>` writes the results elsewhere; `-` does not write them.
//! - `ACCURACY_CASES=<path>` reads other cases (e.g. fresh phrasings, before adding them).
//! - `ACCURACY_BENCH=1`: instead, the cost benchmark of the LLM path in a
//!   populated cluster (`make bench-llm`; see `bench.rs`).
//!
//! The builtin run needs no cluster: name lookups are answered from each case's
//! `workloads` fixture through the same [`WorkloadLookup`] trait the planner
//! uses against the live cluster. The program refuses to run when a case's
//! prompt also appears in a unit test under `src/` (a measurement on prompts
//! the code was tuned on says little).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use kubilitics_ai::agent::{
    builtin, plan_complete, prompt::first_messages, same_step, schema::tool_specs,
};
use kubilitics_ai::api::{Mode, ToolCall};
use kubilitics_ai::tools::{
    Mutation, ToolError, Workload, WorkloadKind, WorkloadLookup, describe_resolution,
};
use serde::Deserialize;
use serde_json::{Value, json};

mod bench;

const CASES: &str = "examples/accuracy/cases.yaml";
const RESULTS: &str = "docs/accuracy/results.md";
/// The classes, in report order, with what they measure.
const CLASSES: &[(&str, &str)] = &[
    ("single", "one change"),
    ("multi", "several changes / conversation"),
    ("refuse", "refuse or ask (no change)"),
    ("read", "read-only question"),
];

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Case {
    class: String,
    prompt: String,
    #[serde(default = "default_ns")]
    namespace: String,
    #[serde(default)]
    history: Vec<String>,
    #[serde(default)]
    workloads: Vec<Fixture>,
    expect: Expect,
    #[serde(default)]
    says: Option<String>,
}

fn default_ns() -> String {
    "default".into()
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Fixture {
    kind: WorkloadKind,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Expect {
    /// `none`: no change and no question answered with data.
    Nothing(String),
    Steps(Vec<Step>),
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Step {
    tool: String,
    #[serde(default)]
    args: Value,
}

/// What a planner did with a case.
#[derive(Debug, Default)]
struct Got {
    /// Read-only calls, in order.
    reads: Vec<(String, Value)>,
    /// Proposed changes, in order.
    changes: Vec<(String, Value)>,
    answer: String,
}

const MUTATING: &[&str] = &[
    "scale_deployment",
    "rollout_restart",
    "delete_pod",
    "create_configmap",
    "patch_resource",
    "apply_manifest",
];

/// The name lookup of a case: its `workloads` fixture.
struct FixtureLookup<'a>(&'a Case);

#[async_trait]
impl WorkloadLookup for FixtureLookup<'_> {
    async fn workloads(
        &self,
        namespace: &str,
        _name: &str,
    ) -> (Result<Vec<Workload>, ToolError>, Option<ToolCall>) {
        let found = self
            .0
            .workloads
            .iter()
            .filter(|w| w.namespace.as_deref().unwrap_or(&self.0.namespace) == namespace)
            .map(|w| Workload {
                kind: w.kind,
                name: w.name.clone(),
                replicas: None,
            })
            .collect();
        (Ok(found), None)
    }
}

fn args_of(v: Value) -> (String, Value) {
    let mut v = v;
    let tool = v["tool"].as_str().unwrap_or("").to_string();
    if let Some(o) = v.as_object_mut() {
        o.remove("tool");
    }
    (tool, v)
}

/// Runs one case through the builtin planner's understanding step (parser,
/// conversation, name resolution); the read-only calls and changes it would make.
async fn builtin_case(case: &Case) -> anyhow::Result<Got> {
    let lookup = FixtureLookup(case);
    let u = builtin::understand(&case.prompt, &case.history, &case.namespace, false, &lookup)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut got = Got {
        answer: u.answer(),
        ..Default::default()
    };
    for step in u.steps() {
        match step {
            builtin::Step::Read(c) => got.reads.push(args_of(serde_json::to_value(c)?)),
            builtin::Step::Change(m) => got.changes.push(args_of(serde_json::to_value(m)?)),
        }
    }
    Ok(got)
}

/// Whether `got` has every key of `want` with the same value (objects compared the same way).
fn subset(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (_, Value::Null) => true,
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| subset(gv, v))),
        (g, w) => g == w,
    }
}

fn step_ok(got: &(String, Value), want: &Step, ns: &str) -> bool {
    let mut want_args = want.args.clone();
    // A step without an expected namespace must stay in the case's namespace
    // (when the planner names one): a misread "in X" is a miss.
    if want_args.get("namespace").is_none() && got.1.get("namespace").is_some() {
        if !want_args.is_object() {
            want_args = json!({});
        }
        want_args["namespace"] = json!(ns);
    }
    got.0 == want.tool && subset(&got.1, &want_args)
}

/// Whether a planner's result is right for the case.
fn judge(case: &Case, got: &Got) -> bool {
    match &case.expect {
        Expect::Nothing(_) => {
            got.changes.is_empty()
                && got.reads.is_empty()
                && case
                    .says
                    .as_ref()
                    .is_none_or(|w| got.answer.to_lowercase().contains(&w.to_lowercase()))
        }
        Expect::Steps(steps) => {
            let changes: Vec<&Step> = steps
                .iter()
                .filter(|s| MUTATING.contains(&s.tool.as_str()))
                .collect();
            if changes.is_empty() {
                // A question: the first read-only call answers it, and nothing changes.
                got.changes.is_empty()
                    && steps
                        .first()
                        .zip(got.reads.first())
                        .is_some_and(|(w, g)| step_ok(g, w, &case.namespace))
            } else {
                got.changes.len() == changes.len()
                    && got
                        .changes
                        .iter()
                        .zip(&changes)
                        .all(|(g, w)| step_ok(g, w, &case.namespace))
            }
        }
    }
}

fn brief(got: &Got) -> String {
    let calls: Vec<String> = got
        .changes
        .iter()
        .chain(got.reads.iter().take(1))
        .map(|(t, a)| format!("{t} {a}"))
        .collect();
    if calls.is_empty() {
        format!(
            "no call: {}",
            got.answer
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(120)
                .collect::<String>()
        )
    } else {
        calls.join("; ")
    }
}

struct Row<'a> {
    class: &'a str,
    pass: bool,
    ms: f64,
}

/// Passed cases per class.
fn scores(rows: &[Row]) -> BTreeMap<String, (usize, usize)> {
    let mut m = BTreeMap::new();
    for r in rows {
        let e = m.entry(r.class.to_string()).or_insert((0, 0));
        e.1 += 1;
        if r.pass {
            e.0 += 1;
        }
    }
    m
}

fn table(title: &str, rows: &[Row]) -> String {
    let s = scores(rows);
    let mut out = format!(
        "## {title}\n\n| class | cases | passed | score | mean latency ms |\n|---|---|---|---|---|\n"
    );
    let mut all = (0, 0, 0.0);
    for (c, what) in CLASSES {
        let (p, n) = s.get(*c).copied().unwrap_or((0, 0));
        let ms: f64 = rows.iter().filter(|r| r.class == *c).map(|r| r.ms).sum();
        all = (all.0 + p, all.1 + n, all.2 + ms);
        out.push_str(&format!(
            "| {c}: {what} | {n} | {p} | {:.1} % | {:.2} |\n",
            pct(p, n),
            ms / n.max(1) as f64
        ));
    }
    out.push_str(&format!(
        "| **all** | {} | {} | {:.1} % | {:.2} |\n",
        all.1,
        all.0,
        pct(all.0, all.1),
        all.2 / all.1.max(1) as f64
    ));
    out
}

fn pct(p: usize, n: usize) -> f64 {
    100.0 * p as f64 / n.max(1) as f64
}

/// Prompts that also appear as string literals in the unit tests under `src/`.
fn overlaps(cases: &[Case]) -> anyhow::Result<Vec<String>> {
    let mut sources = String::new();
    let mut dirs = vec![Path::new("src").to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                // The unit tests: a file's `#[cfg(test)]` part.
                let text = std::fs::read_to_string(&p)?;
                if let Some(i) = text.find("#[cfg(test)]") {
                    sources.push_str(&text[i..]);
                }
            }
        }
    }
    let sources = sources.to_lowercase();
    Ok(cases
        .iter()
        .map(|c| c.prompt.clone())
        .filter(|p| sources.contains(&format!("\"{}\"", p.to_lowercase())))
        .collect())
}

fn check_floor(path: &str, rows: &[Row]) -> anyhow::Result<()> {
    let now = scores(rows);
    if std::env::var("ACCURACY_FLOOR_UPDATE").is_ok_and(|v| v == "1") {
        let mut out = String::from(
            "# Builtin planner accuracy floor: cases passed per class (examples/accuracy/cases.yaml).\n\
             # Written by `ACCURACY_FLOOR_UPDATE=1 cargo run --example accuracy`; a run with\n\
             # ACCURACY_FLOOR_FILE fails when a class passes fewer cases than this.\n",
        );
        for (c, _) in CLASSES {
            out.push_str(&format!("{c} {}\n", now.get(*c).map_or(0, |s| s.0)));
        }
        std::fs::write(path, out)?;
        println!("recorded the floor in {path}");
        return Ok(());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut below = vec![];
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (class, n) = line
            .split_once(' ')
            .with_context(|| format!("{path}: bad line {line:?}"))?;
        let floor: usize = n
            .trim()
            .parse()
            .with_context(|| format!("{path}: bad line {line:?}"))?;
        let got = now.get(class).map_or(0, |s| s.0);
        if got < floor {
            below.push(format!("{class}: {got} passed, floor {floor}"));
        }
    }
    if !below.is_empty() {
        bail!(
            "builtin accuracy dropped below the floor in {path}: {}",
            below.join("; ")
        );
    }
    println!("builtin accuracy is at or above the floor in {path}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cases_path = std::env::var("ACCURACY_CASES").unwrap_or_else(|_| CASES.into());
    let text =
        std::fs::read_to_string(&cases_path).with_context(|| format!("reading {cases_path}"))?;
    let cases: Vec<Case> =
        serde_norway::from_str(&text).with_context(|| format!("parsing {cases_path}"))?;
    for c in &cases {
        if !CLASSES.iter().any(|(k, _)| *k == c.class) {
            bail!(
                "{cases_path}: unknown class {:?} in case {:?}",
                c.class,
                c.prompt
            );
        }
        if let Expect::Nothing(s) = &c.expect
            && s != "none"
        {
            bail!("{cases_path}: expect must be `none` or a list of steps, not {s:?}");
        }
    }
    let shared = overlaps(&cases)?;
    if !shared.is_empty() {
        bail!(
            "these prompts of {cases_path} also appear in unit tests under src/; rephrase one of each: {shared:?}"
        );
    }
    println!("{} cases from {cases_path}", cases.len());
    if std::env::var("ACCURACY_BENCH").is_ok_and(|v| v == "1") {
        let url = std::env::var("ACCURACY_LLM_URL")
            .context("ACCURACY_BENCH=1 needs ACCURACY_LLM_URL (an OpenAI-compatible /v1 URL)")?;
        let model = std::env::var("ACCURACY_LLM_MODEL").unwrap_or_else(|_| "local".into());
        return bench::run(&cases, &url, &model).await;
    }

    let mut rows = vec![];
    for case in &cases {
        let t = Instant::now();
        let got = builtin_case(case).await?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let pass = judge(case, &got);
        if !pass {
            println!(
                "builtin miss [{}]: {:?} -> {}",
                case.class,
                case.prompt,
                brief(&got)
            );
        }
        rows.push(Row {
            class: &case.class,
            pass,
            ms,
        });
    }
    let builtin_table = table("builtin planner", &rows);
    println!("\n{builtin_table}");
    let mut results = format!(
        "# Planner accuracy\n\nWritten by `cargo run --example accuracy` (never by hand) from the {} cases in \
         [`{cases_path}`](../../{cases_path}).\n\n{builtin_table}",
        cases.len()
    );

    let builtin_only = std::env::var("ACCURACY_BUILTIN_ONLY").is_ok_and(|v| v == "1");
    match std::env::var("ACCURACY_LLM_URL") {
        Ok(url) if !builtin_only => {
            let model = std::env::var("ACCURACY_LLM_MODEL").unwrap_or_else(|_| "local".into());
            let mut rows = vec![];
            for case in &cases {
                let t = Instant::now();
                let got = llm_case(&url, &model, case).await?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                let pass = judge(case, &got);
                if !pass {
                    println!(
                        "model miss [{}]: {:?} -> {}",
                        case.class,
                        case.prompt,
                        brief(&got)
                    );
                }
                rows.push(Row {
                    class: &case.class,
                    pass,
                    ms,
                });
            }
            let t = table(&format!("model {model}"), &rows);
            println!("\n{t}");
            results.push_str(&format!("\n{t}"));
        }
        _ => println!(
            "\n(model not measured: set ACCURACY_LLM_URL=http://127.0.0.1:PORT/v1, without ACCURACY_BUILTIN_ONLY=1)"
        ),
    }

    match std::env::var("ACCURACY_RESULTS") {
        Ok(p) if p == "-" => {}
        p => {
            let p = p.unwrap_or_else(|_| RESULTS.into());
            if let Some(dir) = Path::new(&p).parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&p, results)?;
            println!("wrote {p}");
        }
    }
    if let Ok(path) = std::env::var("ACCURACY_FLOOR_FILE") {
        check_floor(&path, &rows)?;
    }
    Ok(())
}

/// Runs one case through a model: its history as earlier turns, then a short
/// tool loop in which `find_workload` is answered from the case's fixture and
/// every other tool with a neutral result, until the model stops calling tools.
async fn llm_case(url: &str, model: &str, case: &Case) -> anyhow::Result<Got> {
    let http = reqwest::Client::new();
    let tools: Vec<Value> = tool_specs().into_iter().map(|s| s.function).collect();
    // The same static prefix and request turn the operator sends.
    let history: Vec<(String, String)> = case
        .history
        .iter()
        .map(|h| (h.clone(), "I planned that; it awaits approval.".to_string()))
        .collect();
    let mut messages = first_messages(&case.namespace, Mode::Plan, &history, &case.prompt, None);
    let lookup = FixtureLookup(case);
    let mut got = Got::default();
    for _ in 0..5 {
        let body = json!({
            "model": model, "temperature": 0.1, "max_tokens": 256, "stream": false,
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
            got.answer = msg["content"].as_str().unwrap_or("").to_string();
            break;
        }
        messages.push(msg.clone());
        let only_changes = calls.iter().all(|c| {
            c.pointer("/function/name")
                .and_then(Value::as_str)
                .is_some_and(|n| MUTATING.contains(&n))
        });
        for call in calls {
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let args: Value = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or(json!({}));
            let result = if name == "find_workload" {
                let ns = args["namespace"]
                    .as_str()
                    .unwrap_or(&case.namespace)
                    .to_string();
                let want = args["name"].as_str().unwrap_or("").to_string();
                let (found, _) = lookup.workloads(&ns, &want).await;
                describe_resolution(&ns, &want, &found.unwrap_or_default())
            } else if MUTATING.contains(&name.as_str()) {
                // The operator's agent keeps one step per change (a repeated call is the same
                // step), and so does this loop.
                let step = |n: &str, a: &Value| {
                    let mut v = a.clone();
                    v["tool"] = json!(n);
                    serde_json::from_value::<Mutation>(v).ok()
                };
                let new = step(&name, &args);
                let repeated = got.changes.iter().any(|(n, a)| match (&new, step(n, a)) {
                    (Some(x), Some(y)) => same_step(x, &y),
                    _ => n == &name && a == &args,
                });
                if !repeated {
                    got.changes.push((name.clone(), args));
                }
                "Recorded as a step of a plan. Nothing has changed yet: a human must approve the plan by its exact id. Do not repeat this call.".to_string()
            } else {
                got.reads.push((name.clone(), args));
                "(no data in the accuracy run)".to_string()
            };
            messages.push(json!({
                "role": "tool",
                "tool_call_id": call["id"].as_str().unwrap_or("call"),
                "content": result,
            }));
        }
        // Like the operator's agent (`--llm-finish-after-plan`): done once every change the
        // prompt asks for is proposed.
        if only_changes && plan_complete(&case.prompt, Mode::Plan, got.changes.len()) {
            break;
        }
    }
    Ok(got)
}
