//! `make bench`: drives N AIRequests through the builtin planner with the
//! operator running as a separate (release) process against the real local
//! control plane, and prints numbers. For each N:
//!
//! - the API server's own write ceiling here (plain creates of small objects at
//!   the same concurrency) and its own create → watch-event latency;
//! - bulk: N requests at once → planning throughput; bulk approval of every
//!   plan → execution throughput; both as a share of the write ceiling given
//!   the API writes each request needs; latencies under that load (queueing);
//! - paced: 50 requests one at a time → create → plan, approval → first step,
//!   approval → Succeeded (the per-request latency, without queueing);
//! - API calls per request from the operator's own client metrics
//!   (`kubilitics_kube_api_requests_total`), split into object writes, Events,
//!   dry runs and the mutation, cross-checked with `apiserver_request_total`;
//! - a restart with every object in place: time to ready, writes it made (0);
//! - operator peak RSS and CPU seconds.
//!
//! Sizes: `BENCH_SIZES=100,1000,5000` (default). Results go to
//! `docs/bench/results.{csv,md}` and the plot `docs/bench/latency.png`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
const PACED: usize = 50;

type Stamps = Arc<Mutex<HashMap<String, Instant>>>;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn p3(v: &[f64]) -> [f64; 3] {
    [pct(v, 0.5), pct(v, 0.95), pct(v, 0.99)]
}

/// Milliseconds from `from[k]` to `to[k']` where `key` maps k to k'.
fn lat(from: &Stamps, to: &Stamps, key: impl Fn(&str) -> String) -> Vec<f64> {
    let (f, t) = (from.lock().unwrap(), to.lock().unwrap());
    f.iter()
        .filter_map(|(k, a)| t.get(&key(k)).map(|b| (*b - *a).as_secs_f64() * 1000.0))
        .collect()
}

/// The value of one Prometheus text-format sample line (0 when unreadable).
fn sample_value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0)
}

/// The API server's `apiserver_request_total`: (writes, reads) summed.
async fn apiserver_requests(client: &Client) -> (f64, f64) {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap_or_default();
    let (mut w, mut r) = (0.0, 0.0);
    for l in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let v = sample_value(l);
        if ["POST", "PATCH", "PUT", "DELETE", "APPLY"]
            .iter()
            .any(|x| l.contains(&format!("verb=\"{x}\"")))
        {
            w += v;
        } else if l.contains("verb=\"GET\"") || l.contains("verb=\"LIST\"") {
            r += v;
        }
    }
    (w, r)
}

/// The API server's measured write rates here.
struct Ceilings {
    create: f64,
    status: f64,
}

/// The operator's own API call counters, by class.
#[derive(Default, Clone, Copy, Debug)]
struct Calls {
    object_writes: f64,
    /// Of the object writes, those to a status subresource (the heavy kind).
    status_writes: f64,
    events: f64,
    dry_runs: f64,
    mutations: f64,
    reads: f64,
    watches: f64,
}

impl std::ops::Sub for Calls {
    type Output = Calls;
    fn sub(self, o: Calls) -> Calls {
        Calls {
            object_writes: self.object_writes - o.object_writes,
            status_writes: self.status_writes - o.status_writes,
            events: self.events - o.events,
            dry_runs: self.dry_runs - o.dry_runs,
            mutations: self.mutations - o.mutations,
            reads: self.reads - o.reads,
            watches: self.watches - o.watches,
        }
    }
}

impl Calls {
    fn writes(&self) -> f64 {
        self.object_writes + self.events + self.dry_runs + self.mutations
    }
    /// Seconds of API server write capacity these calls take, by kind: status
    /// writes at the measured status-patch rate, every other write (creates,
    /// Events, dry runs, the mutation, `extra` driver writes) at the create rate.
    fn capacity_s(&self, c: &Ceilings, extra_creates: f64, extra_patches: f64) -> f64 {
        (self.status_writes + extra_patches) / c.status
            + (self.writes() - self.status_writes + extra_creates) / c.create
    }
    fn per(&self, n: usize) -> Calls {
        let n = n as f64;
        Calls {
            object_writes: self.object_writes / n,
            status_writes: self.status_writes / n,
            events: self.events / n,
            dry_runs: self.dry_runs / n,
            mutations: self.mutations / n,
            reads: self.reads / n,
            watches: self.watches / n,
        }
    }
}

async fn http_get(port: u16, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    if s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .is_err()
    {
        return String::new();
    }
    let mut b = String::new();
    let _ = s.read_to_string(&mut b).await;
    b
}

async fn operator_calls(port: u16) -> Calls {
    let text = http_get(port, "/metrics").await;
    let mut c = Calls::default();
    for l in text
        .lines()
        .filter(|l| l.starts_with("kubilitics_kube_api_requests_total{"))
    {
        let v = sample_value(l);
        let label = |k: &str| {
            l.split(&format!("{k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_string()
        };
        let (verb, resource, dry) = (label("verb"), label("resource"), label("dry_run"));
        let write =
            ["create", "update", "patch", "delete", "deletecollection"].contains(&verb.as_str());
        match () {
            _ if verb == "watch" => c.watches += v,
            _ if !write => c.reads += v,
            _ if dry == "true" => c.dry_runs += v,
            _ if resource == "events" => c.events += v,
            _ if resource.starts_with("airequests") || resource.starts_with("aiplans") => {
                c.object_writes += v;
                if resource.ends_with("/status") {
                    c.status_writes += v;
                }
            }
            _ => c.mutations += v,
        }
    }
    c
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

#[derive(Debug)]
struct Row {
    n: usize,
    ceiling: f64,
    ssa_ceiling: f64,
    merge_ceiling: f64,
    api_lat_p50: f64,
    planned_per_s: f64,
    plan_ratio: f64,
    executed_per_s: f64,
    exec_ratio: f64,
    bulk_plan: [f64; 3],
    bulk_step: [f64; 3],
    bulk_done: [f64; 3],
    paced_plan: [f64; 3],
    paced_step: [f64; 3],
    paced_done: [f64; 3],
    per_req: Calls,
    apiserver_writes_per_req: f64,
    restart_writes: f64,
    rss: f64,
    cpu: f64,
    startup_ms: f64,
    restart_ready_ms: f64,
}

struct Operator {
    child: std::process::Child,
    port: u16,
}

impl Operator {
    async fn start(bin: &Path, kubeconfig: &Path, ns: &str) -> anyhow::Result<(Self, f64)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let t = Instant::now();
        let child = std::process::Command::new(bin)
            .args([
                "run",
                "--insecure-dev-mode",
                "--namespace",
                ns,
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
                "--concurrency",
                &CONCURRENCY.to_string(),
                "--log-format",
                "json",
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        while !http_get(port, "/readyz").await.contains(" 200 ") {
            anyhow::ensure!(t.elapsed() < Duration::from_secs(120), "operator not ready");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok((Self { child, port }, t.elapsed().as_secs_f64() * 1000.0))
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if std::env::var("BENCH_PLOT_ONLY").is_ok_and(|v| v == "1") {
        let dir = repo().join("docs/bench");
        let csv = std::fs::read_to_string(dir.join("results.csv"))?;
        plot(&plot_data(&csv), &dir.join("latency.png"))?;
        println!("plot: docs/bench/latency.png");
        return Ok(());
    }
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
        .unwrap_or_else(|_| "100,1000,5000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut rows = vec![];
    for n in sizes {
        rows.push(run_size(&client, &kubeconfig, &operator_bin, n).await?);
    }
    report(&rows)?;
    if started {
        let _ = std::process::Command::new("bash")
            .arg(repo().join("hack/cluster-down.sh"))
            .env("KUBILITICS_CLUSTER_DIR", &cluster)
            .status();
    }
    Ok(())
}

fn fmt3(p: &[f64; 3]) -> String {
    format!("{:.0}/{:.0}/{:.0}", p[0], p[1], p[2])
}

fn report(rows: &[Row]) -> anyhow::Result<()> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mut md = format!(
        "# Operator benchmark\n\n\
         Machine: {cores} cores, {model}, everything on it at once (API server, etcd, kwok, the operator, this driver). \
         Kubernetes v1.36.3 (local kube-apiserver + etcd, kwok); operator release build as its own process, builtin planner, \
         concurrency {CONCURRENCY}. Command: `make bench` (`BENCH_SIZES=100,1000,5000`).\n\n\
         Each request: \"create configmap …\" → plan with a server-side dry run → approval → ConfigMap created.\n\n\
         - **ceiling**: plain creates of small objects at concurrency {CONCURRENCY}, the API server's own limit here; \
         **status writes/s**: AIRequest status patches like the operator's (≈1 KiB answer, three conditions) \
         by server-side apply and by JSON merge patch, same concurrency, no watchers; **api p50**: its own create → watch-event latency, one at a time.\n\
         - **bulk**: N requests created at once, then every plan approved at once. Throughput as a share of the API server's write capacity = requests/s × the capacity-seconds each request's \
         writes need in that phase: status writes at the measured status-patch rate, every other write (creates, Events, \
         dry runs, the mutation) at the create rate, the driver's own create/approval included. \
         Bulk latencies are mostly queueing behind the other N−1 requests.\n\
         - **paced**: {PACED} more requests one at a time with N objects in place — the per-request latency.\n\
         - **writes/req**: the operator's own client counters: AIRequest/AIPlan writes, Events, dry runs, the mutation; \
         `apiserver` is the API server's `apiserver_request_total` writes per request minus the driver's.\n\
         - **restart**: the operator restarted with every object in place: time to ready (caches synced) and writes in the 5 s after (should be 0).\n\n"
    );
    md.push_str("| N | ceiling obj/s | status writes/s SSA / merge | api p50 ms | planned/s (share) | executed/s (share) | bulk create→plan p50/p95/p99 ms | bulk approval→step | bulk approval→Succeeded | paced create→plan p50/p95/p99 ms | paced approval→step | paced approval→Succeeded | object writes/req | events/req | dry runs/req | mutations/req | reads/req | apiserver writes/req | restart ready ms / writes | peak RSS MiB | CPU s | startup ms |\n");
    md.push_str(&format!("|{}\n", "---|".repeat(22)));
    let mut csv = String::from(
        "n,ceiling,ssa_status_ceiling,merge_status_ceiling,api_lat_p50,planned_per_s,plan_ratio,executed_per_s,exec_ratio,bulk_plan_p50,bulk_plan_p95,bulk_plan_p99,bulk_step_p50,bulk_step_p95,bulk_step_p99,bulk_done_p50,bulk_done_p95,bulk_done_p99,paced_plan_p50,paced_plan_p95,paced_plan_p99,paced_step_p50,paced_step_p95,paced_step_p99,paced_done_p50,paced_done_p95,paced_done_p99,object_writes_per_req,events_per_req,dry_runs_per_req,mutations_per_req,reads_per_req,apiserver_writes_per_req,restart_ready_ms,restart_writes,rss_mib,cpu_s,startup_ms\n",
    );
    for r in rows {
        let c = r.per_req;
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} / {:.0} | {:.1} | {:.1} ({:.0}%) | {:.1} ({:.0}%) | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} / {:.0} | {:.1} | {:.1} | {:.0} |\n",
            r.n, r.ceiling, r.ssa_ceiling, r.merge_ceiling, r.api_lat_p50, r.planned_per_s, r.plan_ratio * 100.0, r.executed_per_s, r.exec_ratio * 100.0,
            fmt3(&r.bulk_plan), fmt3(&r.bulk_step), fmt3(&r.bulk_done), fmt3(&r.paced_plan), fmt3(&r.paced_step), fmt3(&r.paced_done),
            c.object_writes, c.events, c.dry_runs, c.mutations, c.reads, r.apiserver_writes_per_req, r.restart_ready_ms, r.restart_writes,
            r.rss, r.cpu, r.startup_ms
        ));
        let nums: Vec<f64> = [
            vec![
                r.ceiling,
                r.ssa_ceiling,
                r.merge_ceiling,
                r.api_lat_p50,
                r.planned_per_s,
                r.plan_ratio,
                r.executed_per_s,
                r.exec_ratio,
            ],
            r.bulk_plan.to_vec(),
            r.bulk_step.to_vec(),
            r.bulk_done.to_vec(),
            r.paced_plan.to_vec(),
            r.paced_step.to_vec(),
            r.paced_done.to_vec(),
            vec![
                c.object_writes,
                c.events,
                c.dry_runs,
                c.mutations,
                c.reads,
                r.apiserver_writes_per_req,
                r.restart_ready_ms,
                r.restart_writes,
                r.rss,
                r.cpu,
                r.startup_ms,
            ],
        ]
        .concat();
        csv.push_str(&format!(
            "{},{}\n",
            r.n,
            nums.iter()
                .map(|v| format!("{v:.3}"))
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    md.push_str("\n![latency vs N](latency.png)\n");
    println!("\n{md}");
    readme_summary(rows)?;
    let dir = repo().join("docs/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("results.md"), &md)?;
    std::fs::write(dir.join("results.csv"), &csv)?;
    match plot(&plot_data(&csv), &dir.join("latency.png")) {
        Ok(()) => println!("plot: docs/bench/latency.png"),
        Err(e) => println!("no plot: {e}"),
    }
    Ok(())
}

/// The columns of results.csv that the plot draws, in its order.
const PLOTTED: [(&str, &str); 7] = [
    ("paced_plan_p50", "paced create→plan p50"),
    ("paced_plan_p99", "paced create→plan p99"),
    ("paced_step_p50", "paced approval→step p50"),
    ("paced_step_p99", "paced approval→step p99"),
    ("bulk_plan_p50", "bulk create→plan p50"),
    ("bulk_step_p50", "bulk approval→step p50"),
    ("api_lat_p50", "API server create→watch p50"),
];

/// (N, the PLOTTED values) per row of a results CSV.
fn plot_data(csv: &str) -> Vec<(f64, Vec<f64>)> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    lines
        .filter_map(|l| {
            let v: Vec<f64> = l
                .split(',')
                .map(|x| x.parse().unwrap_or(f64::NAN))
                .collect();
            let n = v.get(col("n")?)?;
            let ys = PLOTTED
                .iter()
                .map(|(c, _)| col(c).and_then(|i| v.get(i)).copied().unwrap_or(f64::NAN))
                .collect();
            Some((*n, ys))
        })
        .collect()
}

/// Latency vs N (log-log): paced and bulk percentiles. `BENCH_PLOT_ONLY=1`
/// redraws it from docs/bench/results.csv without running anything.
fn plot(data: &[(f64, Vec<f64>)], path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .map_err(|e| anyhow::anyhow!("font DejaVuSans.ttf: {e}"))?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| anyhow::anyhow!("bad font"))?;
    anyhow::ensure!(!data.is_empty(), "no rows");
    let xs: Vec<f64> = data.iter().map(|r| r.0).collect();
    let colors = [BLUE, CYAN, GREEN, RGBColor(0, 100, 0), RED, MAGENTA, BLACK];
    let series: Vec<(&str, Vec<f64>, RGBColor)> = PLOTTED
        .iter()
        .enumerate()
        .map(|(k, (_, label))| (*label, data.iter().map(|r| r.1[k]).collect(), colors[k]))
        .collect();
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max)
        * 2.0;
    let xmin = xs.iter().copied().fold(f64::MAX, f64::min) * 0.8;
    let xmax = xs.iter().copied().fold(1.0, f64::max) * 1.25;
    let root = BitMapBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Kubilitics AI operator: latency vs N (ms, log-log)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((xmin..xmax).log_scale(), (0.5f64..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("N requests in the run")
        .y_desc("milliseconds")
        .x_labels(6)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (name, ys, color) in series {
        let pts: Vec<(f64, f64)> = xs
            .iter()
            .copied()
            .zip(ys)
            .filter(|(_, y)| y.is_finite())
            .map(|(x, y)| (x, y.max(0.5)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Watches AIRequest phases and created ConfigMaps, timestamping on arrival.
fn watch_namespace(client: &Client, ns: &str) -> (Stamps, Stamps, Stamps) {
    let planned: Stamps = Arc::default();
    let succeeded: Stamps = Arc::default();
    let applied: Stamps = Arc::default();
    let requests: Api<AIRequest> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let (p, s) = (planned.clone(), succeeded.clone());
    let w = watcher(requests, watcher::Config::default()).applied_objects();
    tokio::spawn(async move {
        futures::pin_mut!(w);
        while let Some(Ok(r)) = w.next().await {
            let name = r.metadata.name.clone().unwrap_or_default();
            let m = match r.status.and_then(|s| s.phase) {
                Some(RequestPhase::AwaitingApproval) => &p,
                Some(RequestPhase::Succeeded) => &s,
                _ => continue,
            };
            m.lock().unwrap().entry(name).or_insert_with(Instant::now);
        }
    });
    let a = applied.clone();
    let w = watcher(
        cms,
        watcher::Config::default().labels("app.kubernetes.io/managed-by=kubilitics-ai"),
    )
    .applied_objects();
    tokio::spawn(async move {
        futures::pin_mut!(w);
        while let Some(Ok(cm)) = w.next().await {
            let name = cm.metadata.name.unwrap_or_default();
            a.lock().unwrap().entry(name).or_insert_with(Instant::now);
        }
    });
    (planned, succeeded, applied)
}

async fn wait_count(m: &Stamps, n: usize, what: &str) -> anyhow::Result<()> {
    let t = Instant::now();
    while m.lock().unwrap().len() < n {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(1200),
            "{what} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn request(name: &str, i: usize) -> AIRequest {
    AIRequest::new(
        name,
        AIRequestSpec {
            prompt: format!("create configmap out-{i} with n={i}"),
            ..Default::default()
        },
    )
}

async fn approve(plans: &Api<AIPlan>, p: &AIPlan) -> kube::Result<AIPlan> {
    let id = p.status.as_ref().and_then(|s| s.plan_id.clone());
    plans
        .patch(
            &p.metadata.name.clone().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"approval": {"planId": id}}})),
        )
        .await
}

/// The API server's rate of AIRequest status writes like the operator's (a
/// realistic status, server-side apply vs. JSON merge patch), at the same
/// concurrency, on m requests in a scratch namespace no operator watches.
async fn status_ceilings(client: &Client, ns: &str, m: usize) -> anyhow::Result<(f64, f64)> {
    let scratch = format!("{ns}-ceiling");
    let nsobj: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": scratch}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &nsobj)
        .await?;
    let api: Api<AIRequest> = Api::namespaced(client.clone(), &scratch);
    stream::iter(0..m)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &request(&format!("s{i}"), i))
                    .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let conditions: Vec<serde_json::Value> = ["Ready", "Reconciling", "Stalled"]
        .iter()
        .map(|t| {
            serde_json::json!({
                "type": t, "status": "False", "reason": "ApprovalRequired", "message": "waiting",
                "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1})
        })
        .collect();
    let status = |i: usize, round: u32| {
        serde_json::json!({
            "phase": "AwaitingApproval",
            "answer": format!("⏸️ **Approval required**: create ConfigMap out-{i} ({round}).\n\n{}", "x".repeat(900)),
            "summary": "Approval required",
            "planRef": format!("s{i}-1"), "planId": "0123456789abcdef", "inputDigest": "0123456789abcdef",
            "observedGeneration": 1,
            "conditions": conditions,
        })
    };
    let mut rates = vec![];
    for (round, apply) in [(1u32, true), (2, false)] {
        let t = Instant::now();
        stream::iter(0..m)
            .map(|i| {
                let api = api.clone();
                let body = serde_json::json!({"apiVersion": "ai.kubilitics.io/v1alpha1", "kind": "AIRequest", "status": status(i, round)});
                async move {
                    let name = format!("s{i}");
                    if apply {
                        api.patch_status(&name, &PatchParams::apply("bench").force(), &Patch::Apply(&body)).await
                    } else {
                        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&body)).await
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        rates.push(m as f64 / t.elapsed().as_secs_f64());
    }
    let _ = Api::<Namespace>::all(client.clone())
        .delete(&scratch, &Default::default())
        .await;
    Ok((rates[0], rates[1]))
}

async fn run_size(client: &Client, kubeconfig: &Path, bin: &Path, n: usize) -> anyhow::Result<Row> {
    let ns = format!("bench-{n}-{}", std::process::id());
    let nsobj: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &nsobj)
        .await?;
    println!("== N = {n} (namespace {ns})");

    // The API server's own ceiling: plain creates of small objects at the same
    // concurrency (at least 2000, so that small N still measure a steady rate).
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let m = n.max(2000);
    let t = Instant::now();
    stream::iter(0..m)
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
    let ceiling = m as f64 / t.elapsed().as_secs_f64();
    let (ssa_ceiling, merge_ceiling) = status_ceilings(client, &ns, 1000).await?;

    let (planned, succeeded, applied) = watch_namespace(client, &ns);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Its own latency: create → the watch event, one at a time.
    let mut api_lat = vec![];
    for i in 0..PACED {
        let name = format!("probe-{i}");
        let cm: ConfigMap = serde_json::from_value(
            serde_json::json!({"metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "kubilitics-ai"}}}),
        )?;
        let t = Instant::now();
        cms.create(&PostParams::default(), &cm).await?;
        while !applied.lock().unwrap().contains_key(&name) {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        api_lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let api_lat_p50 = pct(&api_lat, 0.5);
    println!(
        "   write ceiling {ceiling:.0} creates/s ({ssa_ceiling:.0} server-side-apply / {merge_ceiling:.0} merge status patches/s); API server create→watch p50 {api_lat_p50:.1} ms"
    );

    let (op, startup_ms) = Operator::start(bin, kubeconfig, &ns).await?;
    let pid = op.child.id();
    let requests: Api<AIRequest> = Api::namespaced(client.clone(), &ns);
    let plans: Api<AIPlan> = Api::namespaced(client.clone(), &ns);

    // Bulk planning.
    let c0 = operator_calls(op.port).await;
    let (w0, _) = apiserver_requests(client).await;
    let created: Stamps = Arc::default();
    let t_plan = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let (requests, created) = (requests.clone(), created.clone());
            async move {
                let name = format!("r{i}");
                created.lock().unwrap().insert(name.clone(), Instant::now());
                requests
                    .create(&PostParams::default(), &request(&name, i))
                    .await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    wait_count(&planned, n, "planning").await?;
    let plan_s = t_plan.elapsed().as_secs_f64();
    let planned_per_s = n as f64 / plan_s;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c1 = operator_calls(op.port).await;
    let plan_calls = (c1 - c0).per(n);
    let ceilings = Ceilings {
        create: ceiling,
        status: ssa_ceiling,
    };
    // Share of the API server's write capacity in use: requests/s × the
    // capacity-seconds each needs (the driver's create included).
    let plan_ratio = planned_per_s * plan_calls.capacity_s(&ceilings, 1.0, 0.0);
    let bulk_plan = p3(&lat(&created, &planned, |k| k.to_string()));
    println!(
        "   planned {n} in {plan_s:.1}s ({planned_per_s:.1}/s, {:.0}% of the ceiling)",
        plan_ratio * 100.0
    );

    // Bulk approval of every plan by its exact id.
    let all = plans.list(&ListParams::default()).await?.items;
    let approved: Stamps = Arc::default();
    let t_exec = Instant::now();
    stream::iter(all)
        .map(|p| {
            let (plans, approved) = (plans.clone(), approved.clone());
            async move {
                let req = p
                    .status
                    .as_ref()
                    .and_then(|s| s.request.clone())
                    .unwrap_or_default();
                approved.lock().unwrap().insert(req, Instant::now());
                approve(&plans, &p).await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    wait_count(&succeeded, n, "execution").await?;
    let exec_s = t_exec.elapsed().as_secs_f64();
    let executed_per_s = n as f64 / exec_s;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c2 = operator_calls(op.port).await;
    let exec_calls = (c2 - c1).per(n);
    // The driver's approval is a patch of the (larger) AIPlan: counted like a status write.
    let exec_ratio = executed_per_s * exec_calls.capacity_s(&ceilings, 0.0, 1.0);
    let out = |k: &str| format!("out-{}", k.trim_start_matches('r'));
    let bulk_step = p3(&lat(&approved, &applied, out));
    let bulk_done = p3(&lat(&approved, &succeeded, |k| k.to_string()));
    let (w1, _) = apiserver_requests(client).await;
    let per_req = (c2 - c0).per(n);
    let apiserver_writes_per_req = ((w1 - w0) - 2.0 * n as f64) / n as f64;
    println!(
        "   executed {n} in {exec_s:.1}s ({executed_per_s:.1}/s, {:.0}% of the ceiling); per request: {per_req:?}; apiserver writes {apiserver_writes_per_req:.2}",
        exec_ratio * 100.0
    );

    // Paced: one at a time, with every bulk object in place.
    let (pc, pa): (Stamps, Stamps) = (Arc::default(), Arc::default());
    for i in n..n + PACED {
        let name = format!("r{i}");
        pc.lock().unwrap().insert(name.clone(), Instant::now());
        requests
            .create(&PostParams::default(), &request(&name, i))
            .await?;
        while !planned.lock().unwrap().contains_key(&name) {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let p = plans.get(&format!("{name}-1")).await?;
        pa.lock().unwrap().insert(name.clone(), Instant::now());
        approve(&plans, &p).await?;
        while !succeeded.lock().unwrap().contains_key(&name) {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    let paced_plan = p3(&lat(&pc, &planned, |k| k.to_string()));
    let paced_step = p3(&lat(&pa, &applied, out));
    let paced_done = p3(&lat(&pa, &succeeded, |k| k.to_string()));
    println!(
        "   paced: create→plan {}, approval→step {}, approval→Succeeded {} ms",
        fmt3(&paced_plan),
        fmt3(&paced_step),
        fmt3(&paced_done)
    );
    let (rss, cpu) = proc_stats(pid);
    op.stop();

    // Restart with everything in place: time to ready, and no writes.
    let (op, restart_ready_ms) = Operator::start(bin, kubeconfig, &ns).await?;
    let r0 = operator_calls(op.port).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r1 = operator_calls(op.port).await;
    let restart_writes = (r1 - r0).writes() + r0.writes();
    op.stop();
    println!(
        "   restart with {} requests + {} plans: ready in {restart_ready_ms:.0} ms, {restart_writes} writes; RSS {rss:.1} MiB, CPU {cpu:.1}s",
        n + PACED,
        n + PACED
    );

    let _ = Api::<Namespace>::all(client.clone())
        .delete(&ns, &Default::default())
        .await;
    Ok(Row {
        n,
        ceiling,
        ssa_ceiling,
        merge_ceiling,
        api_lat_p50,
        planned_per_s,
        plan_ratio,
        executed_per_s,
        exec_ratio,
        bulk_plan,
        bulk_step,
        bulk_done,
        paced_plan,
        paced_step,
        paced_done,
        per_req,
        apiserver_writes_per_req,
        restart_writes,
        rss,
        cpu,
        startup_ms,
        restart_ready_ms,
    })
}

/// The README's benchmark table (between its `bench:begin`/`bench:end` markers), written from
/// this run's rows: figures in the README come from the program that measured them.
fn readme_summary(rows: &[Row]) -> anyhow::Result<()> {
    const BEGIN: &str = "<!-- bench:begin (written by `make bench`) -->\n";
    const END: &str = "<!-- bench:end -->";
    let mut t = String::from(
        "| N | planned/s (share of API capacity) | executed/s (share) | paced create→plan p50/p99 | paced approval→first step p50/p99 | object writes + Events per request | RSS | restart to ready |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        t.push_str(&format!(
            "| {} | {:.1} ({:.0}%) | {:.1} ({:.0}%) | {:.0} / {:.0} ms | {:.0} / {:.0} ms | {:.0} + {:.0} | {:.1} MiB | {:.0} ms |\n",
            r.n,
            r.planned_per_s,
            r.plan_ratio * 100.0,
            r.executed_per_s,
            r.exec_ratio * 100.0,
            r.paced_plan[0],
            r.paced_plan[2],
            r.paced_step[0],
            r.paced_step[2],
            r.per_req.object_writes,
            r.per_req.events,
            r.rss,
            r.restart_ready_ms,
        ));
    }
    let lat = |f: fn(&Row) -> f64| {
        let v: Vec<f64> = rows.iter().map(f).collect();
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max),
        )
    };
    let (lo, hi) = lat(|r| r.api_lat_p50);
    if let Some(r) = rows.first() {
        t.push_str(&format!(
            "\nThe API server's own create → watch latency was {lo:.1}–{hi:.1} ms; a single-step request needs \
             {:.0} AIRequest/AIPlan writes, {:.0} Events, {:.0} dry run and the mutation.\n",
            r.per_req.object_writes, r.per_req.events, r.per_req.dry_runs
        ));
    }
    let path = repo().join("README.md");
    let readme = std::fs::read_to_string(&path)?;
    let (Some(a), Some(b)) = (readme.find(BEGIN), readme.find(END)) else {
        anyhow::bail!("README.md has no bench:begin/bench:end markers");
    };
    let out = format!("{}{BEGIN}{t}{}", &readme[..a], &readme[b..]);
    std::fs::write(&path, out)?;
    println!("README.md: benchmark table updated");
    Ok(())
}
