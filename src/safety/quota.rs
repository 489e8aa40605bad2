//! Per-requester rate limit and LLM token budget, counted in a ConfigMap so
//! the counts survive operator restarts (and are shared by replicas).
//!
//! One key per requester holds `{"windowStart": <unix s>, "requests": n, "tokens": n}`.
//! Updates use the ConfigMap's resourceVersion (optimistic concurrency).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use serde::{Deserialize, Serialize};

/// Limits per requester and window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Most requests planned per requester per window (`None`: unlimited).
    pub max_requests: Option<u32>,
    /// Most LLM tokens (prompt + completion) per requester per window (`None`: unlimited).
    pub max_tokens: Option<u64>,
    pub window: Duration,
    /// Where the counting ConfigMap lives.
    pub namespace: String,
    pub configmap: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counter {
    pub window_start: i64,
    pub requests: u32,
    pub tokens: u64,
}

/// Why a request has to wait.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exhausted {
    pub message: String,
    /// When the window resets.
    pub retry_at: Timestamp,
}

impl QuotaConfig {
    fn key(user: &str) -> String {
        // ConfigMap keys: [-._a-zA-Z0-9]+
        user.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    /// Pure: may `user` start another request with counter `c` at `now`? Returns the next counter.
    pub fn decide(&self, user: &str, c: Counter, now: Timestamp) -> Result<Counter, Exhausted> {
        let window = self.window.as_secs() as i64;
        let mut c = if now.as_second() >= c.window_start + window {
            Counter {
                window_start: now.as_second(),
                ..Default::default()
            }
        } else {
            c
        };
        let retry_at = Timestamp::from_second(c.window_start + window).unwrap_or(now);
        if let Some(max) = self.max_requests
            && c.requests >= max
        {
            return Err(Exhausted {
                message: format!(
                    "rate limit: {user} already made {} requests in this {}s window (limit {max}); it waits until {retry_at}",
                    c.requests, window
                ),
                retry_at,
            });
        }
        if let Some(max) = self.max_tokens
            && c.tokens >= max
        {
            return Err(Exhausted {
                message: format!(
                    "LLM token budget: {user} used {} tokens in this {}s window (budget {max}); it waits until {retry_at}",
                    c.tokens, window
                ),
                retry_at,
            });
        }
        c.requests += 1;
        Ok(c)
    }

    fn enabled(&self) -> bool {
        self.max_requests.is_some() || self.max_tokens.is_some()
    }

    /// Admits one request of `user`, or says why it must wait.
    pub async fn admit(
        &self,
        client: &Client,
        user: &str,
    ) -> Result<Result<(), Exhausted>, kube::Error> {
        if !self.enabled() {
            return Ok(Ok(()));
        }
        self.update(client, user, |c| self.decide(user, c, Timestamp::now()))
            .await
    }

    /// Adds LLM tokens used by `user`.
    pub async fn add_tokens(
        &self,
        client: &Client,
        user: &str,
        tokens: u64,
    ) -> Result<(), kube::Error> {
        if self.max_tokens.is_none() || tokens == 0 {
            return Ok(());
        }
        self.update(client, user, |mut c| {
            c.tokens += tokens;
            Ok(c)
        })
        .await
        .map(|_| ())
    }

    async fn update(
        &self,
        client: &Client,
        user: &str,
        f: impl Fn(Counter) -> Result<Counter, Exhausted>,
    ) -> Result<Result<(), Exhausted>, kube::Error> {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &self.namespace);
        let key = Self::key(user);
        for _ in 0..10 {
            let existing = api.get_opt(&self.configmap).await?;
            let mut cm = existing.clone().unwrap_or_else(|| ConfigMap {
                metadata: ObjectMeta {
                    name: Some(self.configmap.clone()),
                    namespace: Some(self.namespace.clone()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_string(),
                        crate::api::MANAGER.to_string(),
                    )])),
                    ..Default::default()
                },
                ..Default::default()
            });
            let data = cm.data.get_or_insert_with(BTreeMap::new);
            let current: Counter = data
                .get(&key)
                .and_then(|v| serde_json::from_str(v).ok())
                .unwrap_or_default();
            let next = match f(current) {
                Ok(n) => n,
                Err(e) => return Ok(Err(e)),
            };
            data.insert(
                key.clone(),
                serde_json::to_string(&next).unwrap_or_default(),
            );
            let result = match existing {
                Some(_) => {
                    api.replace(&self.configmap, &PostParams::default(), &cm)
                        .await
                }
                None => api.create(&PostParams::default(), &cm).await,
            };
            match result {
                Ok(_) => return Ok(Ok(())),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e),
            }
        }
        Err(kube::Error::Api(
            kube::core::Status::failure("too many concurrent quota updates", "Conflict")
                .with_code(409)
                .boxed(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max_requests: Option<u32>, max_tokens: Option<u64>) -> QuotaConfig {
        QuotaConfig {
            max_requests,
            max_tokens,
            window: Duration::from_secs(3600),
            namespace: "ns".into(),
            configmap: "cm".into(),
        }
    }

    #[test]
    fn requests_are_counted_per_window() {
        let q = cfg(Some(2), None);
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let c1 = q.decide("alice", Counter::default(), t0).unwrap();
        let c2 = q.decide("alice", c1, t0).unwrap();
        let err = q.decide("alice", c2, t0).unwrap_err();
        assert!(err.message.contains("limit 2"));
        assert_eq!(err.retry_at.as_second(), 1_000_000 + 3600);
        // A new window starts over.
        let later = Timestamp::from_second(1_000_000 + 3600).unwrap();
        assert_eq!(q.decide("alice", c2, later).unwrap().requests, 1);
    }

    #[test]
    fn token_budget_blocks_further_requests() {
        let q = cfg(None, Some(100));
        let t0 = Timestamp::from_second(5000).unwrap();
        let c = Counter {
            window_start: 5000,
            requests: 1,
            tokens: 150,
        };
        assert!(
            q.decide("bob", c, t0)
                .unwrap_err()
                .message
                .contains("budget 100")
        );
        assert!(q.decide("bob", Counter { tokens: 99, ..c }, t0).is_ok());
    }

    #[test]
    fn keys_are_valid_configmap_keys() {
        assert_eq!(
            QuotaConfig::key("system:serviceaccount:a:b"),
            "system_serviceaccount_a_b"
        );
        assert_eq!(QuotaConfig::key("alice@example.com"), "alice_example.com");
    }
}
