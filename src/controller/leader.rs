//! Leader election on a coordination.k8s.io Lease, so that of several
//! replicas exactly one reconciles (and executes plans) at a time.
//!
//! The leader renews the Lease every `retry`; a replica takes over once the
//! holder has not renewed for `lease_duration`. A leader that cannot renew
//! before its Lease runs out exits the process rather than risk a second
//! executor; on graceful shutdown it releases the Lease so a standby takes
//! over at once.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub retry: Duration,
}

/// What a replica may do with a Lease it just read. Pure.
pub fn may_take(lease: &LeaseSpec, me: &str, now: Timestamp) -> bool {
    let holder = lease.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == me {
        return true;
    }
    let duration = i64::from(lease.lease_duration_seconds.unwrap_or(15));
    let renewed = lease
        .renew_time
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    now.as_second() >= renewed + duration
}

pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaderConfig,
}

impl LeaderElector {
    pub fn new(client: Client, cfg: LeaderConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
        }
    }

    /// One attempt to acquire or renew. `Ok(true)`: we hold the Lease.
    pub async fn try_acquire(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let spec = |transitions: i32, acquire: Option<MicroTime>| LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
            acquire_time: acquire.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        };
        match self.api.get_opt(&self.cfg.lease_name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.lease_name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec(0, None)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let cur = lease.spec.clone().unwrap_or_default();
                if !may_take(&cur, &self.cfg.identity, now) {
                    return Ok(false);
                }
                let ours = cur.holder_identity.as_deref() == Some(self.cfg.identity.as_str());
                let transitions = cur.lease_transitions.unwrap_or(0) + i32::from(!ours);
                lease.spec = Some(spec(
                    transitions,
                    if ours { cur.acquire_time } else { None },
                ));
                // resourceVersion in the object: a concurrent taker makes this fail with 409.
                match self
                    .api
                    .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => {
                    tracing::info!(identity = %self.cfg.identity, lease = %self.cfg.lease_name, "became leader");
                    return;
                }
                Ok(false) => tracing::debug!("another replica leads; waiting"),
                Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
            }
            tokio::time::sleep(self.cfg.retry).await;
        }
    }

    /// Renews forever; returns only when leadership is lost.
    pub async fn hold(&self) {
        let mut last_ok = std::time::Instant::now();
        loop {
            tokio::time::sleep(self.cfg.retry).await;
            match self.try_acquire().await {
                Ok(true) => last_ok = std::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("leadership taken over by another replica");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lease renewal failed");
                    // Stop before the Lease can expire under us.
                    if last_ok.elapsed() + self.cfg.retry >= self.cfg.lease_duration {
                        tracing::error!("could not renew the lease in time");
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up (graceful shutdown) so a standby takes over at once.
    pub async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.lease_name).await
            && lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                == Some(self.cfg.identity.as_str())
        {
            if let Some(spec) = lease.spec.as_mut() {
                spec.holder_identity = None;
                spec.renew_time = None;
            }
            let _ = self
                .api
                .replace(&self.cfg.lease_name, &PostParams::default(), &lease)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn takes_free_own_or_expired_leases_only() {
        let now = Timestamp::from_second(1000).unwrap();
        assert!(may_take(&lease(None, 999, 15), "a", now));
        assert!(may_take(&lease(Some("a"), 999, 15), "a", now));
        assert!(!may_take(&lease(Some("b"), 990, 15), "a", now));
        assert!(may_take(&lease(Some("b"), 985, 15), "a", now));
    }
}
