//! `make bench`: drives N AIRequests through the builtin planner with the
//! operator running as a separate (release) process against the real local
//! control plane, and prints numbers:
//!
//! - the API server's own write ceiling here (plain creates at the same concurrency);
//! - planning throughput and create → plan-written latency (p50/p95/p99);
//! - after a bulk approval: approval → step executed and approval → Succeeded latency;
//! - API requests per AIRequest (the API server's own `apiserver_request_total`);
//! - operator peak RSS and CPU seconds.
//!
//! Sizes: `BENCH_SIZES=100,1000` (default `100,1000`). Results also go to
//! `docs/bench/results.csv` and `docs/bench/results.md`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api, Client, Config,
    api::{ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, watcher},
};
use kubilitics_ai::api::{AIPlan, AIRequest, AIRequestSpec, RequestPhase};

const CONCURRENCY: usize = 16;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn apiserver_requests(client: &Client) -> (f64, f64) {
    // (writes, reads) by verb, from the API server's own metrics.
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap_or_default();
    let (mut w, mut r) = (0.0, 0.0);
    for l in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let v: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0.0);
        if [
            "verb=\"POST\"",
            "verb=\"PATCH\"",
            "verb=\"PUT\"",
            "verb=\"DELETE\"",
            "verb=\"APPLY\"",
        ]
        .iter()
        .any(|x| l.contains(x))
        {
            w += v;
        } else if ["verb=\"GET\"", "verb=\"LIST\""]
            .iter()
            .any(|x| l.contains(x))
        {
            r += v;
        }
    }
    (w, r)
}

fn proc_stats(pid: u32) -> (f64, f64) {
    // (peak RSS MiB, CPU seconds)
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, r)| r.split(' ').collect())
        .unwrap_or_default();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (hwm, ticks / 100.0)
}

struct Row {
    n: usize,
    ceiling: f64,
    planned_per_s: f64,
    plan_p: [f64; 3],
    first_step_p: [f64; 3],
    done_p: [f64; 3],
    executed_per_s: f64,
    writes_per_req: f64,
    reads_per_req: f64,
    rss: f64,
    cpu: f64,
    startup_ms: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = std::env::var("KUBILITICS_TEST_CLUSTER")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo().join(".cluster"));
    let mut started = false;
    if !cluster.join("kubeconfig/admin.kubeconfig").exists() {
        let ok = std::process::Command::new("bash")
            .arg(repo().join("hack/cluster-up.sh"))
            .env("KUBILITICS_CLUSTER_DIR", &cluster)
            .status()?
            .success();
        anyhow::ensure!(ok, "hack/cluster-up.sh failed");
        started = true;
    }
    let kubeconfig = cluster.join("kubeconfig/admin.kubeconfig");
    let _ = std::process::Command::new("bash")
        .args(["-c", &format!("source hack/lib.sh && kubectl --kubeconfig {} apply --server-side --force-conflicts -f crds/ >/dev/null && kubectl --kubeconfig {} wait --for=condition=Established crd/airequests.ai.kubilitics.io crd/aiplans.ai.kubilitics.io >/dev/null", kubeconfig.display(), kubeconfig.display())])
        .current_dir(repo())
        .status()?;
    let cfg = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = Client::try_from(cfg)?;
    let operator_bin = repo().join("target/release/kubilitics-ai");
    anyhow::ensure!(
        operator_bin.exists(),
        "build it first: cargo build --release --bin kubilitics-ai (make bench does)"
    );

    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut rows = vec![];
    for n in sizes {
        rows.push(run_size(&client, &kubeconfig, &operator_bin, n).await?);
    }

    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let mut md = format!(
        "# Operator benchmark\n\nMachine: {} cores, {model}; Kubernetes v1.36.3 (local kube-apiserver + etcd, kwok); operator release build, builtin planner, concurrency {CONCURRENCY}.\nEach request: \"create configmap …\" → plan with a server-side dry run → bulk approval → ConfigMap created.\n\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    md.push_str("| N | write ceiling (obj/s) | planned/s | create→plan p50/p95/p99 ms | approval→step p50/p95/p99 ms | approval→Succeeded p50/p95/p99 ms | executed/s | API writes/req | API reads/req | peak RSS MiB | CPU s | startup ms |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut csv = String::from(
        "n,write_ceiling,planned_per_s,plan_p50,plan_p95,plan_p99,step_p50,step_p95,step_p99,done_p50,done_p95,done_p99,executed_per_s,writes_per_req,reads_per_req,rss_mib,cpu_s,startup_ms\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {:.0} | {:.1} | {:.0}/{:.0}/{:.0} | {:.0}/{:.0}/{:.0} | {:.0}/{:.0}/{:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |\n",
            r.n, r.ceiling, r.planned_per_s, r.plan_p[0], r.plan_p[1], r.plan_p[2], r.first_step_p[0], r.first_step_p[1], r.first_step_p[2],
            r.done_p[0], r.done_p[1], r.done_p[2], r.executed_per_s, r.writes_per_req, r.reads_per_req, r.rss, r.cpu, r.startup_ms
        ));
        csv.push_str(&format!(
            "{},{:.1},{:.2},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.2},{:.2},{:.2},{:.1},{:.2},{:.0}\n",
            r.n, r.ceiling, r.planned_per_s, r.plan_p[0], r.plan_p[1], r.plan_p[2], r.first_step_p[0], r.first_step_p[1], r.first_step_p[2],
            r.done_p[0], r.done_p[1], r.done_p[2], r.executed_per_s, r.writes_per_req, r.reads_per_req, r.rss, r.cpu, r.startup_ms
        ));
    }
    println!("\n{md}");
    std::fs::create_dir_all(repo().join("docs/bench"))?;
    std::fs::write(repo().join("docs/bench/results.md"), &md)?;
    std::fs::write(repo().join("docs/bench/results.csv"), &csv)?;
    if started {
        let _ = std::process::Command::new("bash")
            .arg(repo().join("hack/cluster-down.sh"))
            .env("KUBILITICS_CLUSTER_DIR", &cluster)
            .status();
    }
    Ok(())
}

async fn run_size(
    client: &Client,
    kubeconfig: &std::path::Path,
    bin: &std::path::Path,
    n: usize,
) -> anyhow::Result<Row> {
    let ns = format!("bench-{n}-{}", std::process::id());
    let nsobj: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &nsobj)
        .await?;
    println!("== N = {n} (namespace {ns})");

    // The API server's own ceiling: plain creates of small objects at the same concurrency.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let t = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {"name": format!("ceiling-{i}")}, "data": {"a": "1"}})).unwrap();
                cms.create(&PostParams::default(), &cm).await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let ceiling = n as f64 / t.elapsed().as_secs_f64();
    println!("   write ceiling: {ceiling:.0} creates/s");

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let t_start = Instant::now();
    let mut op = std::process::Command::new(bin)
        .args([
            "run",
            "--namespace",
            &ns,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--concurrency",
            "16",
            "--log-format",
            "json",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = op.id();
    loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n").await?;
            let mut b = String::new();
            s.read_to_string(&mut b).await?;
            if b.contains(" 200 ") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let startup_ms = t_start.elapsed().as_secs_f64() * 1000.0;

    // Watch phases and the created ConfigMaps, timestamping on arrival.
    let planned: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let succeeded: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let applied: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let requests: Api<AIRequest> = Api::namespaced(client.clone(), &ns);
    {
        let (planned, succeeded) = (planned.clone(), succeeded.clone());
        let w = watcher(requests.clone(), watcher::Config::default()).applied_objects();
        tokio::spawn(async move {
            futures::pin_mut!(w);
            while let Some(Ok(r)) = w.next().await {
                let name = r.metadata.name.clone().unwrap_or_default();
                match r.status.and_then(|s| s.phase) {
                    Some(RequestPhase::AwaitingApproval) => {
                        planned
                            .lock()
                            .unwrap()
                            .entry(name)
                            .or_insert_with(Instant::now);
                    }
                    Some(RequestPhase::Succeeded) => {
                        succeeded
                            .lock()
                            .unwrap()
                            .entry(name)
                            .or_insert_with(Instant::now);
                    }
                    _ => {}
                }
            }
        });
        let applied = applied.clone();
        let w = watcher(
            cms.clone(),
            watcher::Config::default().labels("app.kubernetes.io/managed-by=kubilitics-ai"),
        )
        .applied_objects();
        tokio::spawn(async move {
            futures::pin_mut!(w);
            while let Some(Ok(cm)) = w.next().await {
                let name = cm.metadata.name.unwrap_or_default();
                applied
                    .lock()
                    .unwrap()
                    .entry(name)
                    .or_insert_with(Instant::now);
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (w0, r0) = apiserver_requests(client).await;

    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let t_plan = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let (requests, created) = (requests.clone(), created.clone());
            async move {
                let name = format!("r{i}");
                let r = AIRequest::new(
                    &name,
                    AIRequestSpec {
                        prompt: format!("create configmap out-{i} with n={i}"),
                        ..Default::default()
                    },
                );
                created.lock().unwrap().insert(name, Instant::now());
                requests.create(&PostParams::default(), &r).await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    while planned.lock().unwrap().len() < n {
        anyhow::ensure!(
            t_plan.elapsed() < Duration::from_secs(600),
            "planning did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let planned_per_s = n as f64 / t_plan.elapsed().as_secs_f64();
    let mut plan_lat: Vec<f64> = {
        let c = created.lock().unwrap();
        planned
            .lock()
            .unwrap()
            .iter()
            .map(|(k, t)| (*t - c[k]).as_secs_f64() * 1000.0)
            .collect()
    };
    println!(
        "   planned {n} in {:.1}s ({planned_per_s:.1}/s)",
        t_plan.elapsed().as_secs_f64()
    );

    // Bulk approval of every plan by its exact id.
    let plans: Api<AIPlan> = Api::namespaced(client.clone(), &ns);
    let all = plans.list(&ListParams::default()).await?.items;
    let approved: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let t_exec = Instant::now();
    stream::iter(all)
        .map(|p| {
            let (plans, approved) = (plans.clone(), approved.clone());
            async move {
                let st = p.status.clone().unwrap_or_default();
                let name = p.metadata.name.clone().unwrap_or_default();
                let req = st.request.clone().unwrap_or_default();
                approved.lock().unwrap().insert(req, Instant::now());
                plans
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(
                            serde_json::json!({"spec": {"approval": {"planId": st.plan_id}}}),
                        ),
                    )
                    .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    while succeeded.lock().unwrap().len() < n {
        anyhow::ensure!(
            t_exec.elapsed() < Duration::from_secs(600),
            "execution did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let executed_per_s = n as f64 / t_exec.elapsed().as_secs_f64();
    let (mut step_lat, mut done_lat) = {
        let a = approved.lock().unwrap();
        let ap = applied.lock().unwrap();
        let s = succeeded.lock().unwrap();
        let step: Vec<f64> = a
            .iter()
            .filter_map(|(req, t)| {
                let i = req.trim_start_matches('r');
                ap.get(&format!("out-{i}"))
                    .map(|x| (*x - *t).as_secs_f64() * 1000.0)
            })
            .collect();
        let done: Vec<f64> = a
            .iter()
            .filter_map(|(req, t)| s.get(req).map(|x| (*x - *t).as_secs_f64() * 1000.0))
            .collect();
        (step, done)
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (w1, r1) = apiserver_requests(client).await;
    let (rss, cpu) = proc_stats(pid);
    let _ = op.kill();
    let _ = op.wait();
    // Our own watchers and creates/approvals are counted too: subtract what the bench itself sent.
    let bench_writes = 2.0 * n as f64;
    let writes_per_req = ((w1 - w0) - bench_writes) / n as f64;
    let reads_per_req = (r1 - r0) / n as f64;
    println!(
        "   executed {n} in {:.1}s ({executed_per_s:.1}/s); {writes_per_req:.1} writes and {reads_per_req:.1} reads per request (incl. events and the mutation); RSS {rss:.1} MiB, CPU {cpu:.1}s",
        t_exec.elapsed().as_secs_f64()
    );
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&ns, &Default::default())
        .await;
    Ok(Row {
        n,
        ceiling,
        planned_per_s,
        plan_p: [
            pct(&mut plan_lat, 0.5),
            pct(&mut plan_lat, 0.95),
            pct(&mut plan_lat, 0.99),
        ],
        first_step_p: [
            pct(&mut step_lat, 0.5),
            pct(&mut step_lat, 0.95),
            pct(&mut step_lat, 0.99),
        ],
        done_p: [
            pct(&mut done_lat, 0.5),
            pct(&mut done_lat, 0.95),
            pct(&mut done_lat, 0.99),
        ],
        executed_per_s,
        writes_per_req,
        reads_per_req,
        rss,
        cpu,
        startup_ms,
    })
}
