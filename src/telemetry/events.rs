//! Kubernetes Events (events.k8s.io) with reporter `kubilitics-ai`.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client, Resource,
    runtime::events::{Event, EventType, Recorder, Reporter},
};

use crate::api::{MANAGER, StepTarget, truncate};

/// One shared recorder; publishing never fails a reconcile (it is logged).
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

/// The reference of an object for events.
pub fn object_ref<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    obj.object_ref(&())
}

impl Events {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes an event. `action` distinguishes events of the same reason
    /// on the same object (e.g. per step), so they are not folded into one series.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(truncate(note, 1000)),
            action: truncate(action, 128),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, regarding).await {
            tracing::warn!(error = %e, reason, "failed to publish event");
        }
    }

    /// Publishes several events at once (one round trip of latency, not one each).
    pub async fn publish_all(&self, items: &[(&ObjectReference, bool, &str, &str, &str)]) {
        futures::future::join_all(
            items
                .iter()
                .map(|(r, w, why, action, note)| self.publish(r, *w, why, action, note)),
        )
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
