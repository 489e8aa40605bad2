//! `kubectl kubilitics` against the real control plane, as real users, and
//! once under tmux for the interactive confirmation.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

fn plugin(user: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-kubilitics"))
        .args(args)
        .env("KUBECONFIG", kubeconfig(user))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// Multi-threaded: the plugin runs as a blocking child process while the operator works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_review_approve_reject_and_history_from_the_terminal() {
    let ns = TestNs::new("plugin").await;
    ensure_chart_rbac();
    let _op = start_operator(&ns.name, |_| {}).await;
    deployment(&ns.name, "web", 1).await;
    for role in ["kubilitics-ai-requester", "view"] {
        bind(&ns.name, "alice", role);
    }
    bind(&ns.name, "bob", "kubilitics-ai-approver");
    let n = ns.name.as_str();

    let (ok, out, err) = plugin(
        "alice",
        &[
            "ask",
            "scale deployment web to 3 replicas",
            "-n",
            n,
            "--wait",
        ],
        "",
    );
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("AwaitingApproval"),
        "progress shows phases: {err}"
    );
    assert!(
        out.contains("Approval required") && out.contains("kubectl kubilitics approve"),
        "{out}"
    );

    let (ok, out, _) = plugin("alice", &["plans", "-n", n], "");
    assert!(
        ok && out.contains("PLAN ID") && out.contains("AwaitingApproval"),
        "{out}"
    );
    let plan = out
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let (ok, out, _) = plugin("alice", &["show", &plan, "-n", n], "");
    assert!(
        ok && out.contains("before: {\"replicas\":1}")
            && out.contains("~ spec.replicas: 1 -> 3")
            && out.contains("rollback"),
        "{out}"
    );
    assert!(
        !out.contains("\x1b["),
        "no colours when stdout is not a terminal"
    );

    // Declining changes nothing; mallory may not even look.
    let (ok, out, _) = plugin("bob", &["approve", &plan, "-n", n], "n\n");
    assert!(ok && out.contains("Not approved"), "{out}");
    assert_eq!(replicas(n, "web").await, 1);
    let (ok, _, err) = plugin("mallory", &["plans", "-n", n], "");
    assert!(!ok && err.contains("not allowed"), "{err}");
    // alice may not approve (no approver role).
    let (ok, _, err) = plugin("alice", &["approve", &plan, "-n", n, "--yes"], "");
    assert!(!ok && err.contains("not allowed"), "{err}");

    let (ok, out, err) = plugin("bob", &["approve", &plan, "-n", n], "y\n");
    assert!(ok && out.contains("approved with id"), "{out}{err}");
    wait_for("3 replicas", Duration::from_secs(20), || async {
        replicas(n, "web").await == 3
    })
    .await;
    wait_phase(n, plan.rsplit_once('-').unwrap().0, "Succeeded").await;
    let (ok, _, err) = plugin("bob", &["approve", &plan, "-n", n, "--yes"], "");
    assert!(
        !ok && err.contains("nothing to approve"),
        "a finished plan is stale: {err}"
    );

    // Reject another plan.
    let (ok, out, err) = plugin(
        "alice",
        &[
            "ask",
            "scale deployment web to 5 replicas",
            "-n",
            n,
            "--wait",
        ],
        "",
    );
    assert!(ok, "{out}{err}");
    let (_, plans, _) = plugin("alice", &["plans", "-n", n, "-o", "json"], "");
    let list: serde_json::Value = serde_json::from_str(&plans).unwrap();
    let pending = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["status"]["phase"] == "AwaitingApproval")
        .unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out, _) = plugin(
        "bob",
        &["reject", &pending, "-n", n, "--reason", "too many"],
        "",
    );
    assert!(ok && out.contains("rejected"), "{out}");

    let (ok, out, _) = plugin("alice", &["history", "-n", n, "-o", "yaml"], "");
    assert!(
        ok && out.contains("scale deployment web to 3 replicas"),
        "{out}"
    );
    assert_eq!(replicas(n, "web").await, 3);
}

#[tokio::test]
async fn interactive_confirmation_under_tmux() {
    let ns = TestNs::new("tmux").await;
    let _op = start_operator(&ns.name, |_| {}).await;
    deployment(&ns.name, "web", 1).await;
    ask("admin", &ns.name, "s", "scale deployment web to 2 replicas").await;
    let s = wait_phase(&ns.name, "s", "AwaitingApproval")
        .await
        .status
        .unwrap();
    let plan = s.plan_ref.unwrap();
    let session = format!("kk-{}", ns.name);
    let cmd = format!(
        "KUBECONFIG={} {} approve {plan} -n {}; sleep 30",
        kubeconfig("admin").display(),
        env!("CARGO_BIN_EXE_kubectl-kubilitics"),
        ns.name
    );
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux")
    };
    assert!(
        tmux(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "200",
            "-y",
            "50",
            &cmd
        ])
        .status
        .success()
    );
    let screen = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).to_string()
    };
    wait_for(
        "the confirmation prompt",
        Duration::from_secs(20),
        || async { screen().contains("[y/N]") },
    )
    .await;
    assert!(screen().contains("~ spec.replicas: 1 -> 2"), "{}", screen());
    tmux(&["send-keys", "-t", &session, "y", "Enter"]);
    wait_for("approved", Duration::from_secs(20), || async {
        screen().contains("approved with id")
    })
    .await;
    tmux(&["kill-session", "-t", &session]);
    wait_for("2 replicas", Duration::from_secs(20), || async {
        replicas(&ns.name, "web").await == 2
    })
    .await;
}
