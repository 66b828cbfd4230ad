//! UnregisterBroker (API 64, `kafka-cluster.sh unregister`, `Admin.unregisterBroker`): removes a
//! broker that is gone for good from the metadata, and (a broker-only node) from the
//! controller quorum's learners, so the active controller stops replicating the metadata log
//! to it. Unlike Kafka, only a fenced broker is removed: see [`AdminError::BrokerNotFenced`].
//!
//! The learner goes first: if the registration's removal then fails, asking again finds the
//! broker still registered and finishes; the other order would leave a learner that
//! BROKER_ID_NOT_REGISTERED then hides.

use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{admin_error_code, blocking};
use crate::authz::{Operation, Resource};
use crate::cluster::{error_chain, AdminError};
use crate::quorum::learner::LearnerRefusal;
use crate::quorum::types::node_id;
use crate::server::dispatch::{sb, Ctx};

/// UnregisterBroker (v0).
pub async fn unregister_broker(
    ctx: &Ctx<'_>,
    req: UnregisterBrokerRequest,
) -> Option<UnregisterBrokerResponse> {
    let id = req.broker_id.0;
    let resp = UnregisterBrokerResponse::default().with_error_message(None);
    Some(match unregister(ctx, id).await {
        Ok(()) => resp,
        Err((code, message)) => resp
            .with_error_code(code.code())
            .with_error_message(Some(sb(message))),
    })
}

async fn unregister(ctx: &Ctx<'_>, id: i32) -> Result<(), (ResponseError, String)> {
    let admin = |e: AdminError| (admin_error_code(&e), e.to_string());
    ctx.authorize(Operation::Alter, Resource::cluster())
        .map_err(admin)?;
    let failed = || admin(AdminError::Storage("task failed".into()));
    let cluster = Arc::clone(&ctx.broker.cluster);
    blocking(move || cluster.unregistrable(id))
        .await
        .ok_or_else(failed)?
        .map_err(admin)?;
    if let (Some(quorum), Ok(node)) = (&ctx.broker.quorum, node_id(id)) {
        match quorum.remove_learner(node).await {
            Ok(removed) => {
                if removed {
                    tracing::info!(broker = id, "removed from the controller quorum's learners");
                }
            }
            // A combined node: voters are the static controller.quorum.voters, so only its
            // broker registration goes.
            Err(LearnerRefusal::VoterStays(_)) => {
                tracing::info!(
                    broker = id,
                    "a voter of the controller quorum: only its broker registration is removed"
                );
            }
            Err(e) => {
                return Err((
                    ResponseError::NotController,
                    format!(
                        "broker {id} could not be removed from the controller quorum: {}",
                        error_chain(&e)
                    ),
                ))
            }
        }
    }
    let cluster = Arc::clone(&ctx.broker.cluster);
    blocking(move || cluster.unregister_broker(id))
        .await
        .ok_or_else(failed)?
        .map_err(admin)
}
