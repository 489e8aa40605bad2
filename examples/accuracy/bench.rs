//! `ACCURACY_BENCH=1`: the cost of the LLM path, measured in a populated
//! cluster (`make bench-llm`).
//!
//! Single-action cases of the accuracy set run through the operator's real
//! agent ([`OpenAiPlanner`] with [`ReadTools`] on a live control plane, so
//! prefetch, tool calls and the context budget all take part) against several
//! namespaces of a dozen Deployments each (pods and Services), requests spread
//! across them. Prints per model: p50/p95 seconds per request, model calls per
//! request, prompt tokens per request split into cached and new (as the server
//! reports them: llama.cpp's `timings.cache_n`, OpenAI's `cached_tokens`),
//! completion tokens and the score; writes `docs/accuracy/llm-cost.md`.
//!
//! Environment: `KUBECONFIG` (an admin kubeconfig), `ACCURACY_LLM_URL`,
//! `ACCURACY_LLM_MODEL`; `ACCURACY_BENCH_CASES` (default 30),
//! `ACCURACY_BENCH_NAMESPACES` (default 3), `ACCURACY_BENCH_FILLERS`
//! (Deployments besides the cases' own per namespace, default 10),
//! `ACCURACY_BENCH_CONTEXT` (`--llm-context-tokens`; default: asked from the
//! server), `ACCURACY_BENCH_OUT` (default `docs/accuracy/llm-cost.md`, `-`: none).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{Namespace, Service},
};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams},
};
use kubilitics_ai::agent::{LlmConfig, OpenAiPlanner, PlanInput, Planner};
use kubilitics_ai::api::Mode;
use kubilitics_ai::telemetry::metrics;
use kubilitics_ai::tools::{ReadTools, WorkloadKind};
use serde_json::{Value, json};

use crate::{Case, Expect, Got, args_of, judge};

const OUT: &str = "docs/accuracy/llm-cost.md";

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Cases that fit the populated cluster: one change, no conversation, the
/// workloads in the case's own namespace.
fn pick(cases: &[Case], n: usize) -> Vec<&Case> {
    cases
        .iter()
        .filter(|c| {
            c.class == "single"
                && c.history.is_empty()
                && c.namespace == "default"
                && !c.workloads.is_empty()
                && c.workloads.iter().all(|w| w.namespace.is_none())
                && matches!(c.expect, Expect::Steps(_))
                && !c.prompt.contains("namespace")
        })
        .take(n)
        .collect()
}

fn labels(name: &str) -> Value {
    json!({"app": name})
}

async fn apply(client: &Client, ns: &str, kind: WorkloadKind, name: &str) -> anyhow::Result<()> {
    let pp = PatchParams::apply("kubilitics-bench").force();
    let template = json!({
        "metadata": {"labels": labels(name)},
        "spec": {"containers": [{"name": "app", "image": format!("registry.example/{name}:1.4.2"),
                                 "ports": [{"containerPort": 8080}]}]}
    });
    match kind {
        WorkloadKind::Deployment => {
            let d = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"replicas": 2, "selector": {"matchLabels": labels(name)}, "template": template},
            });
            Api::<Deployment>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(&d))
                .await?;
        }
        WorkloadKind::StatefulSet => {
            let s = json!({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"replicas": 2, "serviceName": name, "selector": {"matchLabels": labels(name)}, "template": template},
            });
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(&s))
                .await?;
        }
    }
    let svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": labels(name), "ports": [{"port": 80, "targetPort": 8080}]},
    });
    Api::<Service>::namespaced(client.clone(), ns)
        .patch(name, &pp, &Patch::Apply(&svc))
        .await?;
    Ok(())
}

/// Namespaces with fillers and the cases' workloads; waits for their pods.
async fn populate(
    client: &Client,
    namespaces: &[String],
    fillers: usize,
    placed: &[(String, &Case)],
) -> anyhow::Result<usize> {
    let pp = PatchParams::apply("kubilitics-bench").force();
    let filler_names = [
        "checkout",
        "cart",
        "catalog",
        "search",
        "auth",
        "gateway",
        "billing",
        "email",
        "reports",
        "inventory",
        "shipping",
        "metrics-proxy",
        "ledger",
        "profile",
    ];
    let mut total = 0;
    for ns in namespaces {
        let n = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        Api::<Namespace>::all(client.clone())
            .patch(ns, &pp, &Patch::Apply(&n))
            .await?;
        let mut names = BTreeSet::new();
        for (cns, case) in placed {
            if cns == ns {
                for w in &case.workloads {
                    if names.insert(w.name.clone()) {
                        apply(client, ns, w.kind, &w.name).await?;
                    }
                }
            }
        }
        for f in filler_names.iter().cycle().take(fillers) {
            if names.insert(f.to_string()) {
                apply(client, ns, WorkloadKind::Deployment, f).await?;
            }
        }
        total += names.len();
    }
    // kwok marks the pods Running; wait until every Deployment is ready.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let mut waiting = 0;
        for ns in namespaces {
            for d in Api::<Deployment>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await?
            {
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let ready = d
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                if ready < want {
                    waiting += 1;
                }
            }
        }
        if waiting == 0 {
            break;
        }
        if Instant::now() > deadline {
            println!("bench: {waiting} Deployments still not ready; going on");
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(total)
}

struct Measured {
    secs: f64,
    calls: i64,
    prompt: i64,
    cached: i64,
    completion: i64,
    pass: bool,
    note: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Plans every placed case with `planner`, one at a time.
async fn measure(
    planner: &OpenAiPlanner,
    tools: &ReadTools,
    placed: &[(String, &Case)],
    model: &str,
) -> anyhow::Result<Vec<(String, String, Measured)>> {
    // From the agent's own metrics, so a request that failed half-way still
    // counts the calls and tokens it used.
    let counters = || {
        let m = metrics();
        let tokens = |d: &str| m.llm_tokens.with_label_values(&[model, d]).get() as i64;
        (
            m.llm_latency.with_label_values(&[model]).get_sample_count() as i64,
            tokens("input"),
            tokens("cached"),
            tokens("output"),
        )
    };
    let mut rows = vec![];
    for (i, (ns, case)) in placed.iter().enumerate() {
        let input = PlanInput {
            prompt: case.prompt.clone(),
            namespace: ns.clone(),
            namespace_explicit: false,
            mode: Mode::Plan,
            model: None,
            history: vec![],
            resume: None,
            checkpoint: None,
        };
        let before = counters();
        let t = Instant::now();
        let result = planner.plan(&input, tools).await;
        let secs = t.elapsed().as_secs_f64();
        let after = counters();
        let (calls, prompt, cached, completion) = (
            after.0 - before.0,
            after.1 - before.1,
            after.2 - before.2,
            after.3 - before.3,
        );
        let m = match result {
            Ok(out) => {
                let mut got = Got {
                    answer: out.answer.clone(),
                    ..Default::default()
                };
                for m in &out.mutations {
                    let (tool, mut args) = args_of(serde_json::to_value(m)?);
                    // Judged as in the case's own namespace.
                    if args.get("namespace").and_then(Value::as_str) == Some(ns.as_str()) {
                        args["namespace"] = json!(case.namespace);
                    }
                    got.changes.push((tool, args));
                }
                for c in &out.investigation {
                    got.reads.push((c.tool.clone(), c.arguments.clone()));
                }
                let pass = judge(case, &got);
                Measured {
                    secs,
                    calls,
                    prompt,
                    cached,
                    completion,
                    pass,
                    note: if pass {
                        String::new()
                    } else {
                        crate::brief(&got)
                    },
                }
            }
            Err(e) => Measured {
                secs,
                calls,
                prompt,
                cached,
                completion,
                pass: false,
                note: format!("error: {e}"),
            },
        };
        println!(
            "bench [{}/{}] {ns}: {:?} {:.1}s, {} call(s), prompt {} ({} cached), completion {}{}",
            i + 1,
            placed.len(),
            case.prompt,
            m.secs,
            m.calls,
            m.prompt,
            m.cached,
            m.completion,
            if m.pass {
                " ✓".to_string()
            } else {
                format!(" ✗ {}", m.note)
            }
        );
        rows.push((ns.clone(), case.prompt.clone(), m));
    }
    Ok(rows)
}

/// One row of the summary table.
fn summary(model: &str, label: &str, rows: &[(String, String, Measured)]) -> String {
    let n = rows.len().max(1) as f64;
    let mut secs: Vec<f64> = rows.iter().map(|r| r.2.secs).collect();
    secs.sort_by(|a, b| a.total_cmp(b));
    let sum = |f: &dyn Fn(&Measured) -> i64| rows.iter().map(|r| f(&r.2)).sum::<i64>();
    let passed = rows.iter().filter(|r| r.2.pass).count();
    let (prompt, cached) = (sum(&|m| m.prompt), sum(&|m| m.cached));
    let later_prompt: i64 = rows.iter().skip(1).map(|r| r.2.prompt).sum();
    let later_cached: i64 = rows.iter().skip(1).map(|r| r.2.cached).sum();
    let pct = |a: i64, b: i64| {
        if b > 0 {
            100.0 * a as f64 / b as f64
        } else {
            0.0
        }
    };
    let max_calls = rows.iter().map(|r| r.2.calls).max().unwrap_or(0);
    format!(
        "| {model} | {label} | {} | {passed}/{} ({:.1} %) | {:.1} | {:.1} | {:.2} ({max_calls}) | {:.0} | {:.0} | {:.0} | {:.1} % | {:.0} |\n",
        rows.len(),
        rows.len(),
        pct(passed as i64, rows.len() as i64),
        percentile(&secs, 0.5),
        percentile(&secs, 0.95),
        sum(&|m| m.calls) as f64 / n,
        prompt as f64 / n,
        cached as f64 / n,
        (prompt - cached).max(0) as f64 / n,
        pct(later_cached, later_prompt),
        sum(&|m| m.completion) as f64 / n,
    )
}

/// Runs the benchmark; returns the report.
pub async fn run(cases: &[Case], url: &str, model: &str) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("a cluster: set KUBECONFIG (make bench-llm starts one)")?;
    let picked = pick(cases, env_usize("ACCURACY_BENCH_CASES", 30));
    let n_ns = env_usize("ACCURACY_BENCH_NAMESPACES", 3).max(1);
    let fillers = env_usize("ACCURACY_BENCH_FILLERS", 10);
    let namespaces: Vec<String> = ["shop", "payments", "web", "data", "edge"]
        .iter()
        .cycle()
        .take(n_ns)
        .enumerate()
        .map(|(i, n)| {
            format!(
                "bench-{n}{}",
                if i >= 5 { i.to_string() } else { String::new() }
            )
        })
        .collect();
    let placed: Vec<(String, &Case)> = picked
        .iter()
        .enumerate()
        .map(|(i, c)| (namespaces[i % n_ns].clone(), *c))
        .collect();
    let started = Instant::now();
    let workloads = populate(&client, &namespaces, fillers, &placed).await?;
    println!(
        "bench: {} namespaces, {workloads} workloads (2 pods and a Service each), populated in {:.0}s; {} requests",
        namespaces.len(),
        started.elapsed().as_secs_f64(),
        placed.len()
    );

    let context_tokens = std::env::var("ACCURACY_BENCH_CONTEXT")
        .ok()
        .and_then(|v| v.parse().ok());
    let tools = ReadTools::new(client.clone());
    let agent = LlmConfig {
        base_url: url.into(),
        model: model.into(),
        timeout: Duration::from_secs(600),
        retries: 1,
        context_tokens,
        ..Default::default()
    };
    let mut variants = vec![("agent as shipped", agent.clone())];
    if std::env::var("ACCURACY_BENCH_BASELINE").is_ok_and(|v| v == "1") {
        // The loop as it was before prefetch, early finish and compact budgets
        // (4,000 bytes per tool result); the prompt prefix stays static.
        variants.push((
            "no prefetch, no early finish, 1,333-token tool results",
            LlmConfig {
                prefetch: false,
                finish_after_plan: false,
                tool_output_tokens: 1333,
                ..agent
            },
        ));
    }
    let mut table = String::from(
        "| model | agent | requests | score | p50 s/request | p95 s/request | model calls/request (max) | prompt tokens/request | of them cached | new | cached after the first request | completion tokens/request |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut details = String::new();
    for (label, cfg) in variants {
        let planner = OpenAiPlanner::new(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!("bench: {label}");
        let rows = measure(&planner, &tools, &placed, model).await?;
        table.push_str(&summary(model, label, &rows));
        details.push_str(&format!(
            "\n## Requests: {label}\n\n| # | namespace | prompt | seconds | model calls | prompt tokens | cached | completion | passed |\n|---|---|---|---|---|---|---|---|---|\n"
        ));
        for (i, (ns, prompt, m)) in rows.iter().enumerate() {
            details.push_str(&format!(
                "| {} | {ns} | {} | {:.1} | {} | {} | {} | {} | {} |\n",
                i + 1,
                prompt.replace('|', "\\|"),
                m.secs,
                m.calls,
                m.prompt,
                m.cached,
                m.completion,
                if m.pass {
                    "yes".to_string()
                } else {
                    format!("no: {}", m.note.replace('|', "\\|").replace('\n', " "))
                }
            ));
        }
    }
    println!("\n{table}");

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let md = format!(
        "# LLM cost in a populated cluster\n\n\
         Written by `make bench-llm` (`examples/accuracy` with `ACCURACY_BENCH=1`; never by hand). \
         The operator's agent (`OpenAiPlanner`: static prompt prefix, prefetch, compact tool output, \
         context budget) planned {} single-action requests of \
         [`examples/accuracy/cases.yaml`](../../examples/accuracy/cases.yaml) against a live control plane \
         (kwok nodes) holding {} namespaces with {workloads} workloads in all (each 2 pods and a Service), \
         requests spread across the namespaces in turn. One request at a time, on a machine with {cores} \
         CPU cores shared with other work (timings vary with that load). Cached prompt tokens are what the \
         server reported it served from its cache (llama.cpp `timings.cache_n`, OpenAI \
         `usage.prompt_tokens_details.cached_tokens`); calls and tokens come from the agent's metrics, so a \
         request that failed half-way counts what it used.\n\n{table}{details}",
        placed.len(),
        namespaces.len(),
    );
    let out = std::env::var("ACCURACY_BENCH_OUT").unwrap_or_else(|_| OUT.into());
    if out != "-" {
        std::fs::write(&out, md).with_context(|| format!("writing {out}"))?;
        println!("wrote {out}");
    }
    Ok(())
}
