//! Kubernetes Events (events.k8s.io/v1) with reporter `kubilitics-ai`.
//!
//! Each decision is its own Event object, created directly: no in-memory
//! series cache (kube-runtime's `Recorder` keeps one that it scans on every
//! publish, which grew to O(n²) CPU and hundreds of MiB at thousands of
//! requests). Events that differ only in time are distinct decisions here
//! (steps carry their number in `action`), so nothing is lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::{Api, Client, Resource, api::PostParams};

use crate::api::{MANAGER, StepTarget, truncate};
use crate::k8s::kube_is_transient;

/// One shared publisher; publishing never fails a reconcile (it is logged).
#[derive(Clone)]
pub struct Events {
    client: Client,
    instance: String,
    /// Where events about touched objects go when they live in a member cluster (events
    /// about AIRequests and AIPlans always go to the operator's own cluster).
    targets: Option<Client>,
}

/// Whether an event reports something normal or something a person should look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteType {
    Normal,
    Warning,
}

/// One event to publish: about what, which type, why (a PascalCase reason),
/// what was done (`action`), and the text a person reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub regarding: ObjectReference,
    pub type_: NoteType,
    pub reason: String,
    pub action: String,
    pub text: String,
}

impl Note {
    pub fn new(
        regarding: &ObjectReference,
        type_: NoteType,
        reason: &str,
        action: &str,
        text: impl Into<String>,
    ) -> Self {
        Self {
            regarding: regarding.clone(),
            type_,
            reason: reason.into(),
            action: action.into(),
            text: text.into(),
        }
    }

    pub fn normal(
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        text: impl Into<String>,
    ) -> Self {
        Self::new(regarding, NoteType::Normal, reason, action, text)
    }

    pub fn warning(
        regarding: &ObjectReference,
        reason: &str,
        action: &str,
        text: impl Into<String>,
    ) -> Self {
        Self::new(regarding, NoteType::Warning, reason, action, text)
    }
}

/// The reference of an object for events.
pub fn object_ref<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    obj.object_ref(&())
}

/// Distinguishes events created in the same nanosecond.
static SEQ: AtomicU64 = AtomicU64::new(0);

impl Events {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        Self {
            client,
            instance: instance.unwrap_or_else(|| MANAGER.into()),
            targets: None,
        }
    }

    /// This publisher, with events about touched objects created in the member cluster
    /// `client` talks to (where their objects live).
    pub fn with_targets_in(&self, client: Client) -> Self {
        Self {
            targets: Some(client),
            ..self.clone()
        }
    }

    /// The client whose cluster holds the object an event is about.
    fn client_for(&self, regarding: &ObjectReference) -> &Client {
        let ours = regarding
            .api_version
            .as_deref()
            .is_some_and(|v| v.starts_with("ai.kubilitics.io/"));
        match &self.targets {
            Some(member) if !ours => member,
            _ => &self.client,
        }
    }

    /// The Event object for one decision.
    pub fn event(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Event {
        let now = Timestamp::now();
        let base = regarding.name.as_deref().unwrap_or(MANAGER);
        let suffix = format!(
            ".{:x}{:x}",
            now.as_nanosecond(),
            SEQ.fetch_add(1, Ordering::Relaxed) & 0xfff
        );
        let keep = 253usize.saturating_sub(suffix.len()).min(base.len());
        let base: String = base.chars().take(keep).collect();
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{base}{suffix}")),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(truncate(action, 128)),
            reason: Some(truncate(reason, 128)),
            note: Some(truncate(note, 1000)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(MANAGER.into()),
            reporting_instance: Some(truncate(&self.instance, 128)),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            ..Default::default()
        }
    }

    /// Publishes an event. `action` distinguishes events of the same reason
    /// on the same object (e.g. per step).
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let ev = self.event(regarding, warning, reason, action, note);
        let ns = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client_for(regarding).clone(), ns);
        // Retried through a short API server or etcd outage (about 6 s): the
        // callers publish before the write that records their decision, and a
        // decision must not go unreported because the API server restarted.
        let mut delay = Duration::from_millis(100);
        for attempt in 0.. {
            match api.create(&PostParams::default(), &ev).await {
                Ok(_) => return,
                // An earlier attempt landed after all.
                Err(kube::Error::Api(s)) if s.code == 409 => return,
                Err(e) if attempt < 6 && kube_is_transient(&e) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    tracing::warn!(error = %e, reason, "failed to publish event");
                    return;
                }
            }
        }
    }

    /// Publishes several notes at once (one round trip of latency, not one each).
    pub async fn notes(&self, notes: &[Note]) {
        futures::future::join_all(notes.iter().map(|n| {
            self.publish(
                &n.regarding,
                n.type_ == NoteType::Warning,
                &n.reason,
                &n.action,
                &n.text,
            )
        }))
        .await;
    }

    /// Reference of a step's target (for events on the touched object).
    pub fn target_ref(t: &StepTarget) -> ObjectReference {
        ObjectReference {
            api_version: Some(t.api_version.clone()),
            kind: Some(t.kind.clone()),
            name: Some(t.name.clone()),
            namespace: Some(t.namespace.clone()),
            uid: t.uid.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_are_unique_valid_and_bounded() {
        let r = ObjectReference {
            name: Some("x".repeat(300)),
            namespace: Some("ns".into()),
            ..Default::default()
        };
        // A client is not needed to build events.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _g = rt.enter();
        let cfg = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
        let ev = Events::new(Client::try_from(cfg).unwrap(), None);
        let a = ev.event(&r, true, "Blocked", "Plan", "why");
        let b = ev.event(&r, true, "Blocked", "Plan", "why");
        let (na, nb) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
        assert_ne!(na, nb);
        assert!(na.len() <= 253, "{}", na.len());
        assert_eq!(a.type_.as_deref(), Some("Warning"));
        assert_eq!(a.reporting_controller.as_deref(), Some(MANAGER));
        assert_eq!(a.regarding.unwrap().namespace.as_deref(), Some("ns"));
    }
}
