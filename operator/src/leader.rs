//! Leader election over a `coordination.k8s.io/v1` Lease, so two operator replicas can run and
//! only one reconciles. Writes carry the Lease's resourceVersion, so two candidates can never
//! both win. The leader renews every [`Election::renew_every`]. A leader that cannot renew before
//! its lease runs out stops leading (the process exits and its Deployment restarts it). A
//! leader that shuts down hands the lease back, so the other replica takes over at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// What a candidate does with the Lease as it finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it run out: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it.
    Wait {
        /// The holder.
        holder: String,
    },
}

/// Decides from the Lease's spec, as `me`, at `now`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Decision::Acquire;
    }
    if holder == me {
        return Decision::Renew;
    }
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let expires = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .and_then(|t| {
            t.0.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(seconds))
                .ok()
        });
    match expires {
        Some(at) if at > now => Decision::Wait { holder },
        _ => Decision::Acquire,
    }
}

/// One candidate in one Lease.
#[derive(Clone)]
pub struct Election {
    api: Api<Lease>,
    name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease lasts without renewal.
    pub duration: Duration,
    /// How often the leader renews, and a candidate retries.
    pub renew_every: Duration,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Election {
    /// A candidate for Lease `name` in `api`'s namespace.
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Election {
        Election {
            api,
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
            renew_every: duration / 3,
        }
    }

    /// One attempt: acquires or renews the lease if it can. Returns whether we lead now.
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let mut lease = match decision {
            Decision::Wait { .. } => return Ok(false),
            _ => current.clone().unwrap_or_else(|| {
                let mut l = Lease::default();
                l.metadata.name = Some(self.name.clone());
                l
            }),
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if decision == Decision::Acquire {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(self.duration.as_secs() as i32);
        spec.renew_time = Some(MicroTime(now));
        // The resourceVersion read above makes this write conditional: a candidate that raced
        // us gets a conflict and keeps waiting.
        let written = match current {
            Some(_) => {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
            None => self.api.create(&PostParams::default(), &lease).await,
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate leads.
    pub async fn acquire(&self) -> Result<(), kube::Error> {
        let mut said = false;
        loop {
            if self.try_lead().await? {
                tracing::info!(lease = %self.name, identity = %self.identity, "leading");
                return Ok(());
            }
            if !said {
                tracing::info!(lease = %self.name, "another replica leads; standing by");
                said = true;
            }
            tokio::time::sleep(self.renew_every).await;
        }
    }

    /// Renews the lease until it cannot be renewed within its duration; returns then.
    pub async fn keep(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_every).await;
            match self.try_lead().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "the lease was taken over");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "renewing the lease failed"),
            }
            if last_renewed.elapsed() >= self.duration {
                tracing::error!(lease = %self.name, "could not renew the lease in time");
                return;
            }
        }
    }

    /// Hands the lease back if we hold it, so another replica takes over without waiting.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        tracing::info!(lease = %self.name, "lease handed back");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, renewed_at: i64, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed_at).unwrap())),
            lease_duration_seconds: Some(seconds),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_is_taken_when_free_or_run_out_and_kept_by_its_holder() {
        let at = |s| Timestamp::from_second(s).unwrap();
        assert_eq!(decide(None, "a", at(0)), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", at(0)),
            Decision::Acquire,
            "no holder"
        );
        let held = spec("b", 100, 15);
        assert_eq!(
            decide(Some(&held), "a", at(110)),
            Decision::Wait { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&held), "a", at(116)),
            Decision::Acquire,
            "ran out"
        );
        assert_eq!(decide(Some(&held), "b", at(500)), Decision::Renew);
    }
}
