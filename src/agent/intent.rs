//! Deterministic intent parsing for the builtin planner (seed step 2:
//! action, resource, name, replicas, namespace…). It never guesses a
//! mutation: anything unclear becomes [`Action::Help`] or a question.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use crate::tools::WorkloadKind;

/// What the user wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    ListPods,
    PodDetails,
    PodLogs,
    ListDeployments,
    DeploymentStatus,
    ListServices,
    Describe,
    Events,
    ClusterHealth,
    Scale,
    Restart,
    DeletePod,
    CreateConfigMap,
    /// A change the guardrails never allow (reason).
    Blocked(String),
    /// A change we understood but need more detail for, or do not support (message).
    Clarify(String),
    /// Nothing we understood.
    Help,
}

impl Action {
    pub fn is_mutation(&self) -> bool {
        matches!(
            self,
            Action::Scale | Action::Restart | Action::DeletePod | Action::CreateConfigMap
        )
    }

    pub fn label(&self) -> &'static str {
        match self {
            Action::ListPods => "list_pods",
            Action::PodDetails => "get_pod_details",
            Action::PodLogs => "get_pod_logs",
            Action::ListDeployments => "list_deployments",
            Action::DeploymentStatus => "get_deployment_status",
            Action::ListServices => "list_services",
            Action::Describe => "describe_resource",
            Action::Events => "get_events",
            Action::ClusterHealth => "get_cluster_health",
            Action::Scale => "scale_deployment",
            Action::Restart => "rollout_restart",
            Action::DeletePod => "delete_pod",
            Action::CreateConfigMap => "create_configmap",
            Action::Blocked(_) => "blocked",
            Action::Clarify(_) => "clarify",
            Action::Help => "help",
        }
    }
}

/// Resource kinds the parser knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pod,
    Deployment,
    StatefulSet,
    Service,
    ConfigMap,
    Node,
    Namespace,
    Secret,
    Other(&'static str),
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pod => "pod",
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::Service => "service",
            Kind::ConfigMap => "configmap",
            Kind::Node => "node",
            Kind::Namespace => "namespace",
            Kind::Secret => "secret",
            Kind::Other(s) => s,
        }
    }

    pub fn workload(self) -> Option<WorkloadKind> {
        match self {
            Kind::Deployment => Some(WorkloadKind::Deployment),
            Kind::StatefulSet => Some(WorkloadKind::StatefulSet),
            _ => None,
        }
    }
}

/// The parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub action: Action,
    pub kind: Option<Kind>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub replicas: Option<i64>,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub container: Option<String>,
    pub data: BTreeMap<String, String>,
}

fn re(s: &str) -> Regex {
    Regex::new(s).expect("static regex")
}

static KIND_WORDS: &[(&str, Kind)] = &[
    ("pods", Kind::Pod),
    ("pod", Kind::Pod),
    ("po", Kind::Pod),
    ("deployments", Kind::Deployment),
    ("deployment", Kind::Deployment),
    ("deploy", Kind::Deployment),
    ("deploys", Kind::Deployment),
    ("statefulsets", Kind::StatefulSet),
    ("statefulset", Kind::StatefulSet),
    ("sts", Kind::StatefulSet),
    ("services", Kind::Service),
    ("service", Kind::Service),
    ("svc", Kind::Service),
    ("configmaps", Kind::ConfigMap),
    ("configmap", Kind::ConfigMap),
    ("cm", Kind::ConfigMap),
    ("nodes", Kind::Node),
    ("node", Kind::Node),
    ("namespaces", Kind::Namespace),
    ("namespace", Kind::Namespace),
    ("ns", Kind::Namespace),
    ("secrets", Kind::Secret),
    ("secret", Kind::Secret),
    ("clusterrolebindings", Kind::Other("clusterrolebinding")),
    ("clusterrolebinding", Kind::Other("clusterrolebinding")),
    ("clusterroles", Kind::Other("clusterrole")),
    ("clusterrole", Kind::Other("clusterrole")),
    ("daemonsets", Kind::Other("daemonset")),
    ("daemonset", Kind::Other("daemonset")),
    ("ds", Kind::Other("daemonset")),
    ("jobs", Kind::Other("job")),
    ("job", Kind::Other("job")),
    ("ingresses", Kind::Other("ingress")),
    ("ingress", Kind::Other("ingress")),
    ("pvc", Kind::Other("persistentvolumeclaim")),
];

/// Words that are never resource names.
static STOP: &[&str] = &[
    "the",
    "my",
    "a",
    "an",
    "all",
    "to",
    "of",
    "in",
    "for",
    "this",
    "that",
    "it",
    "its",
    "our",
    "your",
    "me",
    "please",
    "and",
    "with",
    "on",
    "from",
    "is",
    "are",
    "be",
    "by",
    "named",
    "called",
    "replicas",
    "replica",
    "instances",
    "pods",
    "pod",
    "logs",
    "log",
    "status",
    "up",
    "down",
    "now",
    "back",
    "some",
    "each",
    "every",
    "any",
    "what",
    "which",
    "how",
    "why",
    "show",
    "get",
    "list",
    "describe",
    "scale",
    "restart",
    "delete",
    "remove",
    "kill",
    "create",
    "make",
    "new",
    "last",
    "lines",
    "line",
    "events",
    "event",
    "namespace",
    "cluster",
    "health",
    "details",
    "info",
    "running",
    "failing",
    "crashing",
    "there",
    "at",
    "about",
    "doing",
    "going",
    "happening",
    "wrong",
    "out",
    "one",
    "ones",
    "container",
    "can",
    "you",
    "i",
    "we",
    "do",
    "does",
    "did",
    "set",
    "change",
    "rollout",
    "rolling",
    "just",
    "current",
    "currently",
    "state",
    "tail",
    "since",
    "minutes",
    "hours",
    "seconds",
    "zero",
    "times",
    "again",
    "quick",
    "look",
    "check",
    "see",
    "tell",
    "give",
    "data",
    "key",
    "keys",
    "value",
    "values",
    "literal",
    "literals",
    "as",
    "x",
    "then",
    "so",
    "or",
    "not",
    "no",
    "yes",
    "has",
    "have",
    "had",
    "was",
    "were",
    "will",
    "would",
    "should",
];

static NAMESPACE_RES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    vec![
        re(r"(?:^|\s)(?:-n|--namespace)[\s=]+([a-z0-9][-a-z0-9]*)"),
        re(r"\bnamespace[\s:=]+[`'\x22]?([a-z0-9][-a-z0-9]*)"),
        re(
            r"\b(?:in|from|on|of|within|inside)\s+(?:the\s+)?[`'\x22]?([a-z0-9][-a-z0-9]*)[`'\x22]?\s+(?:namespace|ns)\b",
        ),
        re(r"\bns[\s:=]+([a-z0-9][-a-z0-9]*)"),
    ]
});
static TRAILING_IN: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b(?:in|on)\s+(?:the\s+)?[`'\x22]?([a-z0-9][-a-z0-9]*)[`'\x22]?\s*[.!?]*\s*$")
});
static REPLICAS_RES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    vec![
        re(r"\bto\s+(-?\d+)\b"),
        re(r"(-?\d+)\s*(?:replicas?|instances?|pods?|copies)\b"),
        re(r"\breplicas?\s*(?:=|:|to|of)?\s*(-?\d+)\b"),
        re(r"--replicas[=\s]+(-?\d+)"),
    ]
});
static TAIL_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:last|tail|first|latest)\s+(\d+)(?:\s+(?:log\s+)?lines?)?|(\d+)\s+(?:log\s+)?lines?")
});
static SINCE_RE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:last|past|since)\s+(\d+)\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\b")
});
static CONTAINER_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:\bcontainer|(?:^|\s)-c)[\s=:]+[`'\x22]?([a-z0-9][-a-z0-9]*)"));
static KV_RE: LazyLock<Regex> =
    LazyLock::new(|| re(r#"([A-Za-z0-9_.\-]+)\s*=\s*("([^"]*)"|'([^']*)'|[^\s,;]+)"#));
static SLASH_REF: LazyLock<Regex> = LazyLock::new(|| re(r"\b([a-z]+)/([a-z0-9][-a-z0-9.]*)"));
static QUOTED: LazyLock<Regex> = LazyLock::new(|| re(r#"[`'"]([a-z0-9][-a-z0-9.]*)[`'"]"#));
static NAMED: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:named|called)\s+[`'\x22]?([a-z0-9][-a-z0-9.]*)"));
static PREP_NAME: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\b(?:for|of|from)\s+(?:the\s+)?(?:pod\s+)?[`'\x22]?([a-z0-9][-a-z0-9.]*)")
});
static NEGATION: LazyLock<Regex> =
    LazyLock::new(|| re(r"\b(?:don'?t|do not|never|shouldn'?t|should not|no need to)\b"));
static QUESTION_HOW: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^\s*(?:how (?:do|can|would|should) (?:i|we|you)|what happens if|what does|explain|can you explain)\b",
    )
});

fn kind_of(word: &str) -> Option<Kind> {
    KIND_WORDS.iter().find(|(w, _)| *w == word).map(|(_, k)| *k)
}

fn is_name(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 253
        && !STOP.contains(&word)
        && kind_of(word).is_none()
        && word
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !word.chars().all(|c| c.is_ascii_digit())
}

fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| {
        c.is_whitespace() || matches!(c, ',' | ';' | '?' | '!' | '(' | ')' | '`' | '"' | '\'')
    })
    .map(|t| t.trim_end_matches(['.', ':']).to_string())
    .filter(|t| !t.is_empty())
    .collect()
}

/// Parses a prompt.
pub fn parse(prompt: &str) -> Intent {
    let original = prompt.trim();
    let text = original.to_lowercase();
    let words = tokens(&text);
    let has = |w: &str| words.iter().any(|x| x == w);
    let has_any = |ws: &[&str]| ws.iter().any(|w| has(w));

    // Namespace first, then blank it out so it is not taken for a name.
    let mut namespace = None;
    let mut scrubbed = text.clone();
    for r in NAMESPACE_RES.iter() {
        if let Some(c) = r.captures(&text) {
            namespace = Some(c[1].to_string());
            scrubbed = scrubbed.replace(&c[0], " ");
            break;
        }
    }
    if namespace.is_none()
        && let Some(c) = TRAILING_IN.captures(&text)
    {
        let w = &c[1];
        if is_name(w) {
            namespace = Some(w.to_string());
            scrubbed = scrubbed.replace(&c[0], " ");
        }
    }

    // The first kind word mentioned, `kind/name` references, quoted names.
    let mut kind = None;
    let mut name = None;
    if let Some(c) = SLASH_REF.captures(&scrubbed)
        && let Some(k) = kind_of(&c[1])
    {
        kind = Some(k);
        name = Some(c[2].to_string());
    }
    let swords = tokens(&scrubbed);
    if kind.is_none() {
        kind = swords.iter().find_map(|w| kind_of(w));
    }
    if name.is_none()
        && let Some(c) = NAMED.captures(&scrubbed)
    {
        name = Some(c[1].to_string());
    }
    if name.is_none()
        && let Some(c) = QUOTED.captures(original)
    {
        name = Some(c[1].to_lowercase());
    }
    if name.is_none()
        && let Some(k) = kind
    {
        // "deployment nginx" or "nginx deployment".
        if let Some(i) = swords.iter().position(|w| kind_of(w) == Some(k)) {
            let after = swords.get(i + 1).filter(|w| is_name(w));
            let before = i
                .checked_sub(1)
                .and_then(|j| swords.get(j))
                .filter(|w| is_name(w));
            name = after.or(before).cloned();
        }
    }

    let replicas = REPLICAS_RES
        .iter()
        .find_map(|r| r.captures(&scrubbed).and_then(|c| c[1].parse::<i64>().ok()))
        .or_else(|| (has("zero") || text.contains("scale down completely")).then_some(0));
    let tail_lines = TAIL_RE
        .captures(&text)
        .and_then(|c| c.get(1).or(c.get(2)).and_then(|m| m.as_str().parse().ok()));
    let since_seconds = SINCE_RE.captures(&text).and_then(|c| {
        let n: i64 = c[1].parse().ok()?;
        let unit = &c[2];
        Some(match unit.chars().next() {
            Some('h') => n * 3600,
            Some('m') => n * 60,
            _ => n,
        })
    });
    let tail_lines = if since_seconds.is_some() && !text.contains("line") {
        None
    } else {
        tail_lines
    };
    let container = CONTAINER_RE.captures(&text).map(|c| c[1].to_string());
    let mut intent = Intent {
        action: Action::Help,
        kind,
        name: name.clone(),
        namespace,
        replicas,
        tail_lines,
        since_seconds,
        container,
        data: BTreeMap::new(),
    };

    let deleting = has_any(&[
        "delete",
        "remove",
        "kill",
        "terminate",
        "destroy",
        "drop",
        "evict",
    ]);
    let scaling = has_any(&["scale", "scaled", "scaling", "resize"])
        || (has_any(&["replicas", "replica", "instances"])
            && has_any(&["set", "change", "increase", "decrease", "bump", "reduce"])
            && replicas.is_some());
    let restarting = has_any(&["restart", "restarting", "bounce", "redeploy", "recycle"])
        && !has_any(&["restarts", "restarted"])
        || text.contains("rollout restart");
    let creating = has_any(&["create", "make", "add"]) && kind == Some(Kind::ConfigMap);
    let mutating = deleting || scaling || restarting || creating;

    // Blocked operations hold whatever else the prompt says.
    // "delete namespace production": the namespace phrase was consumed above.
    let blocked_kind = kind.or((kind.is_none() && has("namespace")).then_some(Kind::Namespace));
    if deleting
        && let Some(k) = blocked_kind
        && matches!(
            k,
            Kind::Namespace
                | Kind::Node
                | Kind::Other("clusterrole")
                | Kind::Other("clusterrolebinding")
        )
    {
        intent.action = Action::Blocked(format!(
            "Operation 'delete' on '{}' is not allowed via Kubilitics AI",
            k.as_str()
        ));
        return intent;
    }
    if mutating && (NEGATION.is_match(&text) || QUESTION_HOW.is_match(&text)) {
        intent.action = Action::Clarify(
            "This reads like a question about a change rather than a request to make one, so nothing was planned. \
             To plan it, ask directly, e.g. \"scale deployment nginx to 3 replicas\"."
                .into(),
        );
        return intent;
    }
    if kind == Some(Kind::Secret) {
        intent.action =
            Action::Clarify("Secrets are never read or changed by Kubilitics AI.".into());
        return intent;
    }

    intent.action = if scaling {
        let workload = kind.and_then(Kind::workload);
        match (kind, workload, &name, replicas) {
            (Some(k), None, _, _) if k != Kind::Pod => {
                Action::Clarify(format!("I can scale deployments and statefulsets, not {}s.", k.as_str()))
            }
            (_, _, None, _) => Action::Clarify(
                "Which deployment or statefulset should I scale? e.g. \"scale deployment nginx to 5 replicas\".".into(),
            ),
            (_, _, Some(_), None) => {
                Action::Clarify("How many replicas? e.g. \"scale deployment nginx to 5 replicas\".".into())
            }
            _ => {
                if intent.kind != Some(Kind::StatefulSet) {
                    intent.kind = Some(Kind::Deployment);
                }
                Action::Scale
            }
        }
    } else if restarting {
        match (kind, &name) {
            (Some(Kind::Pod), _) => Action::Clarify(
                "Pods are not restarted in place: ask to \"delete pod <name>\" (its controller re-creates it) or to \"restart deployment <name>\".".into(),
            ),
            (Some(k), _) if k.workload().is_none() => {
                Action::Clarify(format!("I can restart deployments and statefulsets, not {}s.", k.as_str()))
            }
            (_, None) => Action::Clarify("Which deployment should I restart? e.g. \"restart deployment api\".".into()),
            _ => {
                if intent.kind != Some(Kind::StatefulSet) {
                    intent.kind = Some(Kind::Deployment);
                }
                Action::Restart
            }
        }
    } else if deleting {
        match (kind, &name) {
            (Some(Kind::Pod), Some(_)) => Action::DeletePod,
            (Some(Kind::Pod), None) => {
                Action::Clarify("Which pod should I delete? Name exactly one pod.".into())
            }
            (Some(k), _) => Action::Clarify(format!(
                "The builtin planner deletes only single pods, not {}s; use kubectl or the openai provider for other deletions.",
                k.as_str()
            )),
            (None, _) => Action::Clarify(
                "What should I delete? I can delete a single pod: \"delete pod <name>\".".into(),
            ),
        }
    } else if creating {
        for c in KV_RE.captures_iter(original) {
            let v = c.get(3).or(c.get(4)).map(|m| m.as_str()).unwrap_or(&c[2]);
            intent.data.insert(c[1].to_string(), v.to_string());
        }
        match &name {
            Some(n) if intent.data.contains_key(n) || n.contains('=') => {
                Action::Clarify("What should the ConfigMap be called? e.g. \"create configmap app-config with LOG_LEVEL=debug\".".into())
            }
            None => Action::Clarify(
                "What should the ConfigMap be called? e.g. \"create configmap app-config with LOG_LEVEL=debug\".".into(),
            ),
            Some(_) if intent.data.is_empty() => Action::Clarify(
                "What data should it hold? Give key=value pairs, e.g. \"create configmap app-config with LOG_LEVEL=debug\".".into(),
            ),
            Some(_) => Action::CreateConfigMap,
        }
    } else if has_any(&["log", "logs", "logging", "output", "stdout"]) {
        if intent.name.is_none() {
            intent.name = PREP_NAME
                .captures(&scrubbed)
                .map(|c| c[1].to_string())
                .filter(|n| is_name(n));
        }
        match &intent.name {
            Some(_) => Action::PodLogs,
            None => Action::Clarify("Which pod's logs? e.g. \"show logs of pod web-abc\".".into()),
        }
    } else if has_any(&["event", "events", "happened", "happening"]) {
        Action::Events
    } else if has_any(&["health", "healthy"])
        || (has("cluster") && has_any(&["status", "doing", "ok", "okay", "overview"]))
        || (kind == Some(Kind::Node) && name.is_none())
    {
        Action::ClusterHealth
    } else if let Some(k) = kind {
        let detail = has_any(&[
            "describe", "details", "detail", "inspect", "wrong", "why", "explain", "yaml", "spec",
        ]) || (name.is_some() && !has_any(&["list", "all"]));
        let status = has_any(&["status", "rollout", "progress", "ready", "available"]);
        match (k, &name, detail || status) {
            (Kind::Pod, None, _) => Action::ListPods,
            (Kind::Pod, Some(_), _) => Action::PodDetails,
            (Kind::Deployment, None, _) => Action::ListDeployments,
            (Kind::Deployment, Some(_), _) => Action::DeploymentStatus,
            (Kind::Service, None, _) => Action::ListServices,
            (Kind::Namespace, None, _) => Action::ClusterHealth,
            (_, Some(_), _) => Action::Describe,
            (k, None, _) => Action::Clarify(format!(
                "Which {}? Name it, e.g. \"describe {} <name>\".",
                k.as_str(),
                k.as_str()
            )),
        }
    } else if has_any(&[
        "running",
        "crashing",
        "failing",
        "pending",
        "restarting",
        "broken",
        "unhealthy",
    ]) {
        Action::ListPods
    } else {
        Action::Help
    };
    intent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Intent {
        parse(s)
    }

    #[track_caller]
    fn act(s: &str, a: Action) {
        assert_eq!(p(s).action, a, "{s}: {:?}", p(s));
    }

    #[track_caller]
    fn clarify(s: &str) {
        assert!(matches!(p(s).action, Action::Clarify(_)), "{s}: {:?}", p(s));
    }

    #[track_caller]
    fn blocked(s: &str) {
        assert!(matches!(p(s).action, Action::Blocked(_)), "{s}: {:?}", p(s));
    }

    #[track_caller]
    fn scale(s: &str, name: &str, replicas: i64, ns: Option<&str>) {
        let i = p(s);
        assert_eq!(i.action, Action::Scale, "{s}: {i:?}");
        assert_eq!(i.name.as_deref(), Some(name), "{s}");
        assert_eq!(i.replicas, Some(replicas), "{s}");
        assert_eq!(i.namespace.as_deref(), ns, "{s}");
    }

    #[test]
    fn scale_phrasings() {
        scale("Scale my nginx deployment to 5 replicas", "nginx", 5, None);
        scale(
            "Scale my nginx deployment to 5 replicas in production",
            "nginx",
            5,
            Some("production"),
        );
        scale("scale deployment nginx to 3", "nginx", 3, None);
        scale("scale deploy/web to 10 replicas", "web", 10, None);
        scale(
            "please scale the api deployment to 2 replicas in namespace shop",
            "api",
            2,
            Some("shop"),
        );
        scale(
            "scale deployment checkout --replicas=4 -n shop",
            "checkout",
            4,
            Some("shop"),
        );
        scale("Scale down web deployment to zero", "web", 0, None);
        scale("scale nginx deployment to 0 replicas", "nginx", 0, None);
        scale(
            "set replicas of deployment frontend to 6",
            "frontend",
            6,
            None,
        );
        scale(
            "scale the 'payments' deployment to 7 in the shop namespace",
            "payments",
            7,
            Some("shop"),
        );
        scale("Scale deployment `orders` to 1", "orders", 1, None);
        scale(
            "can you scale deployment nginx to 5 replicas please",
            "nginx",
            5,
            None,
        );
        let i = p("scale statefulset db to 3");
        assert_eq!(
            (i.action, i.kind, i.name.as_deref(), i.replicas),
            (Action::Scale, Some(Kind::StatefulSet), Some("db"), Some(3))
        );
        let i = p("scale sts/redis to 2 replicas");
        assert_eq!(
            (i.action, i.kind, i.name.as_deref()),
            (Action::Scale, Some(Kind::StatefulSet), Some("redis"))
        );
    }

    #[test]
    fn scale_needs_name_and_count() {
        clarify("scale it up");
        clarify("scale my deployment");
        clarify("scale deployment nginx");
        clarify("scale service web to 3");
        clarify("how do I scale a deployment to 5 replicas?");
        clarify("don't scale nginx deployment to 0");
    }

    #[test]
    fn restart_phrasings() {
        for s in [
            "restart deployment api",
            "Rollout restart the api deployment",
            "please restart my api deployment",
            "bounce deployment/api",
            "restart deploy api -n shop",
        ] {
            let i = p(s);
            assert_eq!(i.action, Action::Restart, "{s}: {i:?}");
            assert_eq!(i.name.as_deref(), Some("api"), "{s}");
        }
        let i = p("restart statefulset kafka");
        assert_eq!(
            (i.action, i.kind),
            (Action::Restart, Some(Kind::StatefulSet))
        );
        clarify("restart pod web-123");
        clarify("restart everything");
        clarify("restart service web");
    }

    #[test]
    fn delete_phrasings() {
        for (s, name) in [
            ("Delete the api-abc123 pod", "api-abc123"),
            ("delete pod web-7d876db474-4779w", "web-7d876db474-4779w"),
            ("kill pod/worker-ghi789", "worker-ghi789"),
            ("remove pod 'flaky-1' in namespace shop", "flaky-1"),
        ] {
            let i = p(s);
            assert_eq!(i.action, Action::DeletePod, "{s}: {i:?}");
            assert_eq!(i.name.as_deref(), Some(name), "{s}");
        }
        clarify("delete deployment nginx");
        clarify("delete all the pods");
        clarify("delete service web");
        clarify("remove everything");
        clarify("never delete pod web-1");
    }

    #[test]
    fn blocked_operations() {
        blocked("delete namespace production");
        blocked("Delete the kube-system namespace");
        blocked("remove node kwok-node-0");
        blocked("delete clusterrole admin");
        blocked("delete clusterrolebinding cluster-admin");
    }

    #[test]
    fn configmap_creation() {
        let i = p("create configmap app-config with LOG_LEVEL=debug and MODE=fast");
        assert_eq!(i.action, Action::CreateConfigMap, "{i:?}");
        assert_eq!(i.name.as_deref(), Some("app-config"));
        assert_eq!(i.data.get("LOG_LEVEL").map(String::as_str), Some("debug"));
        assert_eq!(i.data.get("MODE").map(String::as_str), Some("fast"));
        let i =
            p("Create a configmap named settings with greeting=\"hello world\" in namespace shop");
        assert_eq!(i.action, Action::CreateConfigMap, "{i:?}");
        assert_eq!(i.name.as_deref(), Some("settings"));
        assert_eq!(
            i.data.get("greeting").map(String::as_str),
            Some("hello world")
        );
        assert_eq!(i.namespace.as_deref(), Some("shop"));
        clarify("create configmap app-config");
        clarify("create a configmap");
    }

    #[test]
    fn read_only_phrasings() {
        act("How are my pods doing?", Action::ListPods);
        act("list pods", Action::ListPods);
        act("show me all pods in namespace shop", Action::ListPods);
        act("what pods are crashing?", Action::ListPods);
        act("get pods -n kube-system", Action::ListPods);
        act("which pods are failing", Action::ListPods);
        act("describe pod web-abc", Action::PodDetails);
        act("what's wrong with pod worker-ghi789?", Action::PodDetails);
        act("show logs of pod web-abc", Action::PodLogs);
        act("logs for web-abc, last 20 lines", Action::PodLogs);
        act("list deployments", Action::ListDeployments);
        act(
            "show deployments in shop namespace",
            Action::ListDeployments,
        );
        act("status of deployment nginx", Action::DeploymentStatus);
        act(
            "what is the rollout status of the nginx deployment",
            Action::DeploymentStatus,
        );
        act("list services", Action::ListServices);
        act("what services are there in shop", Action::ListServices);
        act("describe service web", Action::Describe);
        act("describe configmap app-config", Action::Describe);
        act("describe statefulset db", Action::Describe);
        act("show recent events", Action::Events);
        act("what happened in namespace shop?", Action::Events);
        act("events for pod web-abc", Action::Events);
        act("is my cluster healthy?", Action::ClusterHealth);
        act("cluster health", Action::ClusterHealth);
        act("how is the cluster doing", Action::ClusterHealth);
        act("list nodes", Action::ClusterHealth);
        act("what pods have restarted", Action::ListPods);
    }

    #[test]
    fn log_arguments() {
        let i = p("show the last 50 lines of logs for pod web-abc container nginx");
        assert_eq!(
            (i.tail_lines, i.container.as_deref(), i.name.as_deref()),
            (Some(50), Some("nginx"), Some("web-abc"))
        );
        let i = p("logs of pod web-abc from the last 10 minutes");
        assert_eq!((i.since_seconds, i.tail_lines), (Some(600), None));
        let i = p("tail 5 logs of pod/api-1 -c sidecar");
        assert_eq!(
            (i.tail_lines, i.container.as_deref(), i.name.as_deref()),
            (Some(5), Some("sidecar"), Some("api-1"))
        );
        clarify("show logs");
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        act("hello", Action::Help);
        act("what is the meaning of life", Action::Help);
        act("make it faster", Action::Help);
        act("", Action::Help);
        act("fix everything", Action::Help);
        clarify("show me the secret db-password");
        clarify("read secret api-keys");
        clarify("explain what happens if I delete pod web-1");
    }

    #[test]
    fn names_are_never_stop_words() {
        assert!(!is_name("the"));
        assert!(!is_name("pods"));
        assert!(!is_name("42"));
        assert!(is_name("web-1"));
        assert!(!is_name("Web"));
    }

    // Fuzzing (proptest): `PROPTEST_CASES=100000 cargo test --lib fuzz_` runs it longer.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any text at all: never a panic, and a mutation always names its object.
            #[test]
            fn fuzz_parse_never_panics(s in "\\PC{0,400}") {
                let i = parse(&s);
                if i.action.is_mutation() && i.action != Action::CreateConfigMap {
                    prop_assert!(i.name.as_deref().is_some_and(|n| !n.is_empty()), "{s:?}: {i:?}");
                }
                if i.action == Action::Scale {
                    prop_assert!(i.replicas.is_some_and(|r| r >= 0), "{s:?}: {i:?}");
                }
            }

            /// Padding around a real request does not change what it means. Names
            /// are hyphenated like most real ones: a bare English word ("no",
            /// "all") may be read as a word, and then the parser asks rather than guess.
            #[test]
            fn fuzz_scale_requests_parse_exactly(
                name in "[a-z][a-z0-9]{1,8}-[a-z0-9]{1,10}",
                n in 0i64..500,
                pad in "[ \\t]{0,3}",
            ) {
                let i = parse(&format!("{pad}scale deployment {name} to {n} replicas{pad}"));
                prop_assert_eq!(i.action, Action::Scale);
                prop_assert_eq!(i.name.as_deref(), Some(name.as_str()));
                prop_assert_eq!(i.replicas, Some(n));
            }
        }
    }
}
