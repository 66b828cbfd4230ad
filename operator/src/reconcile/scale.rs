//! A broker scale step carried out against the brokers: what [`crate::scale`] plans, sent
//! through the admin API (AlterPartitionReassignments, then ElectLeaders once the partitions
//! sit where the plan wants them), and turned into the size the broker StatefulSet gets, the
//! status and the events. The Kafka side goes first, before any child is applied: a
//! StatefulSet shrinks only after the brokers said its departing pods hold nothing. Once it
//! has shrunk, each removed broker is unregistered (UnregisterBroker) as soon as it shows
//! fenced, and the step ends when none is left registered.

use std::time::Duration;

use super::access::Access;
use gregor_client::admin::{Admin, AdminError};
use kube::runtime::events::EventType;

use super::conditions::Want;
use crate::crd::cluster::ScalingStatus;
use crate::rebalance::Move;
use crate::scale::{self, Action, Need, Sizes, View};

/// What the removal of the brokers a scale-down took away says: the ids unregistered now,
/// and what it still waits for.
type Removed = (Vec<i32>, Option<String>);

/// How long the brokers get to answer one step's requests.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// What a step did, for the reconcile to apply and report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The broker pool's size to apply; `None` leaves the spec's.
    pub size: Option<i32>,
    /// Whether a step is under way, so a roll waits.
    pub active: bool,
    /// The Progressing condition while the step is under way or blocked.
    pub progressing: Option<Want>,
    /// Why the step is blocked until the spec changes (Degraded, with its reason).
    pub blocked: Option<String>,
    /// `status.scaling`.
    pub status: Option<ScalingStatus>,
    /// Events to record: type, reason, note.
    pub events: Vec<(EventType, &'static str, String)>,
}

/// Reads what a step needs to know from the brokers.
async fn read(admin: &mut Admin) -> Result<View, AdminError> {
    let (brokers, assignment) = admin.assignment().await?;
    let under_way = admin.reassignments_under_way().await?;
    Ok(View {
        brokers,
        assignment,
        under_way,
    })
}

/// Connects, reads, decides and sends, each within [`KAFKA_TIMEOUT`]. Returns the size the
/// decided action allows, what the brokers said (when they did) and the action as it turned
/// out (a failed send or an election still pending becomes a wait).
async fn session(access: &Access, sizes: Sizes) -> (i32, Option<View>, Action) {
    let work = async {
        let mut admin = access.admin().await.map_err(|e| e.to_string())?;
        let view = read(&mut admin).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((admin, view))
    };
    let read = tokio::time::timeout(KAFKA_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {KAFKA_TIMEOUT:?}")));
    let (mut admin, view) = match read {
        Ok(got) => got,
        Err(why) => {
            let action = scale::decide(sizes, Err(why));
            return (scale::size(sizes, &action), None, action);
        }
    };
    let decided = scale::decide(sizes, Ok(&view));
    let size = scale::size(sizes, &decided);
    let sent = match &decided {
        Action::Reassign(moves) => {
            tracing::info!(partitions = moves.len(), "reassigning partitions");
            let targets: Vec<_> = moves.iter().map(Move::target).collect();
            match tokio::time::timeout(KAFKA_TIMEOUT, admin.reassign(&targets)).await {
                Ok(Ok(())) => decided.clone(),
                Ok(Err(e)) => wait(format!("the reassignments to be accepted ({e})")),
                Err(_) => wait("the reassignments to be accepted".into()),
            }
        }
        Action::Finish => {
            match tokio::time::timeout(KAFKA_TIMEOUT, admin.elect_preferred_leaders()).await {
                Ok(Ok(pending)) if pending.is_empty() => decided.clone(),
                Ok(Ok(pending)) => wait(format!(
                    "preferred leaders to take over ({})",
                    pending.join("; ")
                )),
                Ok(Err(e)) => wait(format!("the preferred leader election ({e})")),
                Err(_) => wait("the preferred leader election".into()),
            }
        }
        Action::Wait { .. } | Action::Blocked { .. } => decided.clone(),
    };
    (size, Some(view), sent)
}

fn wait(reason: String) -> Action {
    Action::Wait { reason }
}

/// Unregisters every broker [`scale::removal`] finds fenced among those `sizes` removed.
async fn unregister_removed(access: &Access, sizes: Sizes) -> Removed {
    let work = async {
        let mut admin = access.admin().await?;
        let plan = scale::removal(sizes, &admin.registrations().await?);
        let mut problems = Vec::new();
        if !plan.running.is_empty() {
            problems.push(format!(
                "brokers {} to stop (still registered and not fenced)",
                scale::list(&plan.running)
            ));
        }
        let mut done = Vec::new();
        for id in plan.unregister {
            match admin.unregister_broker(id).await {
                Ok(true) => done.push(id),
                // BROKER_ID_NOT_REGISTERED: already gone.
                Ok(false) => {}
                Err(e) => problems.push(e.to_string()),
            }
        }
        Ok::<_, AdminError>((done, problems))
    };
    match tokio::time::timeout(KAFKA_TIMEOUT, work).await {
        Ok(Ok((done, problems))) => (done, (!problems.is_empty()).then(|| problems.join("; "))),
        Ok(Err(e)) => (Vec::new(), Some(format!("the brokers to answer ({e})"))),
        Err(_) => (
            Vec::new(),
            Some(format!(
                "the brokers to answer (no answer within {KAFKA_TIMEOUT:?})"
            )),
        ),
    }
}

/// The last part of a scale-down: the StatefulSet has shrunk; the removed brokers leave the
/// metadata (and the controller quorum) as they show fenced, and then the step ends.
fn removal_outcome(sizes: Sizes, (done, waiting): Removed) -> Outcome {
    let mut out = Outcome {
        size: Some(sizes.to),
        ..Default::default()
    };
    for id in done {
        out.events.push((
            EventType::Normal,
            "BrokerUnregistered",
            format!(
                "broker {id} removed for good: unregistered from the cluster metadata and the \
                 controller quorum"
            ),
        ));
    }
    if let Some(why) = waiting {
        out.progressing = Some(Want::yes(
            "Progressing",
            "RemovingBrokers",
            format!(
                "unregistering removed brokers {}: waiting for {why}",
                scale::list(&sizes.removed())
            ),
        ));
        out.status = Some(ScalingStatus {
            from: sizes.from,
            to: sizes.to,
            reassignments: 0,
            waiting_for: Some(why),
        });
    }
    out
}

/// Carries out the step `need` asks for against the brokers `access` reaches; `recorded` is the
/// step in the status.
pub async fn run(access: &Access, need: Need, recorded: Option<&ScalingStatus>) -> Outcome {
    let sizes = match need {
        Need::Nothing => return Outcome::default(),
        Need::AfterRoll { current, target } => {
            tracing::info!(current, target, "the broker scale step waits for the roll");
            return Outcome {
                size: Some(current),
                ..Default::default()
            };
        }
        Need::Step(sizes) => sizes,
    };
    if sizes.removing() {
        return removal_outcome(sizes, unregister_removed(access, sizes).await);
    }
    let (size, view, sent) = session(access, sizes).await;
    let growing = sizes.from <= sizes.to;
    let (reason, what) = if growing {
        ("ScalingUp", format!("adding brokers up to {}", sizes.to))
    } else {
        (
            "DrainingBrokers",
            format!(
                "draining brokers {} before removal",
                scale::list(&sizes.leaving())
            ),
        )
    };
    // Metadata lists a replica being removed until its reassignment completes.
    let left = view
        .as_ref()
        .map_or(0, |v| scale::left_on_leaving(sizes, &v.assignment));
    let under_way = match (&sent, &view) {
        (Action::Reassign(moves), _) => moves.len(),
        (_, Some(v)) => v.under_way,
        _ => 0,
    };
    let mut out = Outcome {
        size: Some(size),
        ..Default::default()
    };
    let status = |waiting_for: Option<String>| ScalingStatus {
        from: sizes.from,
        to: sizes.to,
        reassignments: under_way as i32,
        waiting_for,
    };
    let fresh = recorded.is_none_or(|r| r.to != sizes.to);
    if fresh {
        out.events.push((
            EventType::Normal,
            if growing { "ScalingUp" } else { "ScalingDown" },
            format!("from {} to {} brokers", sizes.current, sizes.to),
        ));
    }
    match sent {
        Action::Finish => {
            out.events.push((
                EventType::Normal,
                if growing { "ScaledUp" } else { "ScaledDown" },
                format!(
                    "{} brokers; partitions reassigned and preferred leaders elected",
                    sizes.to
                ),
            ));
            if !growing {
                // The step goes on until the removed brokers are unregistered; their pods
                // go once the StatefulSet shrinks.
                let pending = (
                    Vec::new(),
                    Some(format!("brokers {} to stop", scale::list(&sizes.leaving()))),
                );
                let removal = removal_outcome(
                    Sizes {
                        current: sizes.to,
                        ..sizes
                    },
                    pending,
                );
                out.progressing = removal.progressing;
                out.status = removal.status;
            }
        }
        Action::Blocked { reason: why } => {
            if recorded.and_then(|r| r.waiting_for.as_deref()) != Some(why.as_str()) {
                out.events
                    .push((EventType::Warning, "ScaleDownBlocked", why.clone()));
            }
            out.progressing = Some(Want::no("Progressing", "ScaleDownBlocked", why.clone()));
            out.blocked = Some(why.clone());
            out.status = Some(status(Some(why)));
        }
        Action::Reassign(moves) => {
            let replicas: usize = moves.iter().map(Move::replicas_moved).sum();
            let message = if growing {
                format!(
                    "{what}: reassigning {} partitions ({replicas} replicas move)",
                    moves.len()
                )
            } else {
                format!(
                    "{what}: {left} replicas left on them, {} reassignments under way",
                    moves.len()
                )
            };
            out.active = true;
            out.progressing = Some(Want::yes("Progressing", reason, message));
            out.status = Some(status(None));
        }
        Action::Wait { reason: why } => {
            let message = if growing {
                format!("{what}: waiting for {why}")
            } else {
                format!("{what}: {left} replicas left on them; waiting for {why}")
            };
            out.active = true;
            out.progressing = Some(Want::yes("Progressing", reason, message));
            out.status = Some(status(Some(why)));
        }
    }
    out
}
