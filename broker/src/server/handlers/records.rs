//! DeleteRecords: moves partitions' log start offsets forward on their leaders, as
//! `kafka-delete-records.sh` and the admin clients' `deleteRecords` ask; followers follow
//! from the log start offset in the leader's fetch responses.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::*;
use kafka_protocol::messages::*;

use super::{blocking, led_partition, log_error_code};
use crate::authz::{Operation, Resource};
use crate::server::dispatch::Ctx;

/// DeleteRecords: for each partition this node leads, records below the asked offset go
/// (`-1`: the high watermark); an offset above the high watermark is OFFSET_OUT_OF_RANGE, one
/// below the log start changes nothing. Needs DELETE on the topic. The low watermark
/// answered is the leader's new log start offset.
pub async fn delete_records(
    ctx: &Ctx<'_>,
    req: DeleteRecordsRequest,
) -> Option<DeleteRecordsResponse> {
    let cluster = Arc::clone(&ctx.broker.cluster);
    let node = ctx.broker.node_id();
    let denied: Vec<bool> = req
        .topics
        .iter()
        .map(|t| !ctx.authorized(Operation::Delete, Resource::topic(&t.name.0)))
        .collect();
    let work = move || {
        req.topics
            .into_iter()
            .zip(denied)
            .map(|(t, denied)| {
                let topic = cluster.topic(&t.name.0);
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|dp| {
                        let result = DeleteRecordsPartitionResult::default()
                            .with_partition_index(dp.partition_index);
                        let outcome =
                            led_partition(topic.as_ref(), denied, dp.partition_index, node)
                                .and_then(|p| {
                                    p.delete_records(dp.offset).map_err(|e| log_error_code(&e))
                                });
                        match outcome {
                            Ok(low_watermark) => result.with_low_watermark(low_watermark),
                            Err(e) => result.with_low_watermark(-1).with_error_code(e.code()),
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect::<Vec<_>>()
    };
    let topics = blocking(work).await?;
    Some(DeleteRecordsResponse::default().with_topics(topics))
}
