//! DescribeLogDirs: which of this broker's log dirs holds each partition it is a replica of,
//! and how large that replica's log is. Kafka's reassignment tool asks it for the replicas it
//! is about to move; `kafka-log-dirs --describe` prints it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{admin_error_code, blocking};
use crate::authz::{Operation, Resource};
use crate::cluster::Cluster;
use crate::server::dispatch::{sb, Ctx};

/// One hosted replica: topic, partition, log size in bytes, and how far the log end is
/// behind the high watermark.
type Hosted = (String, i32, i64, i64);

/// DescribeLogDirs (v1–4): every configured log dir, with the replicas it holds of the
/// partitions asked for (all when the list is null). Volume sizes are not known (-1).
pub async fn describe_log_dirs(
    ctx: &Ctx<'_>,
    req: DescribeLogDirsRequest,
) -> Option<DescribeLogDirsResponse> {
    if let Err(e) = ctx.authorize(Operation::Describe, Resource::cluster()) {
        // As Kafka: no directories, and (v3+) the refusal.
        return Some(
            DescribeLogDirsResponse::default().with_error_code(admin_error_code(&e).code()),
        );
    }
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let cluster = Arc::clone(&ctx.broker.cluster);
    let Some(by_dir) = blocking(move || hosted_replicas(&cluster, wanted.as_ref())).await else {
        return Some(
            DescribeLogDirsResponse::default()
                .with_error_code(ResponseError::KafkaStorageError.code()),
        );
    };
    let results = by_dir
        .into_iter()
        .map(|(dir, replicas)| {
            let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
            for (topic, index, size, lag) in replicas {
                topics.entry(topic).or_default().push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(index)
                        .with_partition_size(size)
                        .with_offset_lag(lag),
                );
            }
            DescribeLogDirsResult::default()
                .with_log_dir(sb(dir.display().to_string()))
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, partitions)| {
                            DescribeLogDirsTopic::default()
                                .with_name(TopicName(sb(name)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
        })
        .collect();
    Some(DescribeLogDirsResponse::default().with_results(results))
}

/// This node's replicas of the `wanted` partitions (all when `None`), by the log dir holding
/// them; every configured log dir appears, holding something or not (blocking: takes the log
/// locks). Only this node's replicas have a log here.
fn hosted_replicas(
    cluster: &Cluster,
    wanted: Option<&BTreeMap<String, Vec<i32>>>,
) -> BTreeMap<PathBuf, Vec<Hosted>> {
    cluster.by_log_dir(|t, p, log| {
        let asked = wanted.is_none_or(|w| w.get(&t.name).is_some_and(|ps| ps.contains(&p.index)));
        let lag = (p.high_watermark() - p.log_end_offset()).max(0);
        asked.then(|| (t.name.clone(), p.index, log.size_bytes() as i64, lag))
    })
}
