//! CreateTopics, DeleteTopics and CreatePartitions. Each topic's change runs on a blocking
//! thread through the metadata log; errors are per topic, with messages naming the problem.
//!
//! The partitions each creates or deletes count against the client's
//! `controller_mutation_rate` (KIP-599): from CreateTopics v6, DeleteTopics v5 and
//! CreatePartitions v3 a topic asked for while the client's bucket is spent fails with
//! THROTTLING_QUOTA_EXCEEDED; older versions go through. A response with such a violation (a
//! refused topic, or on an older version a mutation that overdraws the bucket) carries the time
//! the client must back off, and its connection waits that long ([`Mutations`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::*;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{admin_error_code, admin_error_message, blocking};
use crate::authz::{Operation, Resource, ResourceType};
use crate::cluster::{AdminError, NewTopic};
use crate::server::dispatch::{sb, Ctx};

/// One request's use of the client's `controller_mutation_rate`, as Kafka's
/// ControllerMutationQuota: strict (from `strict_since`) refuses topics once the bucket is
/// spent; permissive lets them through. A violation makes the response carry a throttle time.
struct Mutations<'a, 'b> {
    ctx: &'a Ctx<'b>,
    strict: bool,
    violated: bool,
}

impl<'a, 'b> Mutations<'a, 'b> {
    fn new(ctx: &'a Ctx<'b>, strict_since: i16) -> Mutations<'a, 'b> {
        Mutations {
            ctx,
            strict: ctx.version >= strict_since,
            violated: false,
        }
    }

    /// THROTTLING_QUOTA_EXCEEDED for a topic asked for while the bucket is spent (strict),
    /// when the change `applies` (a topic that exists already, or does not, gets its own error
    /// first, as Kafka checks it first).
    fn admit(&mut self, applies: bool) -> Result<(), AdminError> {
        if applies && self.strict && self.ctx.mutations_spent() {
            self.violated = true;
            return Err(AdminError::ThrottlingQuotaExceeded);
        }
        Ok(())
    }

    /// Takes `partitions` created or deleted from the bucket.
    fn record(&mut self, partitions: u32) {
        self.ctx.record_mutation(partitions);
        if !self.strict && self.ctx.mutations_spent() {
            self.violated = true;
        }
    }

    /// The response's throttle time: the time to back off after a violation, else 0.
    fn throttle_ms(&self) -> i32 {
        if self.violated {
            self.ctx.mutation_throttle_ms()
        } else {
            0
        }
    }
}

/// CreateTopics.
pub async fn create_topics(
    ctx: &Ctx<'_>,
    req: CreateTopicsRequest,
) -> Option<CreateTopicsResponse> {
    let mut results = Vec::with_capacity(req.topics.len());
    let mut mutations = Mutations::new(ctx, 6);
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut configs = BTreeMap::new();
        let mut bad_config = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => bad_config = Some(format!("config {} has no value", c.name.as_str())),
            }
        }
        let assigned = !t.assignments.is_empty();
        let mut assignments = None;
        if assigned {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                bad_config = bad_config.or(Some(
                    "both replica assignments and partitions/replication factor were given".into(),
                ));
            }
            // Partitions are numbered by their position once sorted; the indexes must be 0..n.
            let mut a: Vec<(i32, Vec<i32>)> = t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| b.0).collect(),
                    )
                })
                .collect();
            a.sort_by_key(|(p, _)| *p);
            if a.iter().enumerate().any(|(i, (p, _))| *p != i as i32) {
                bad_config = bad_config.or(Some(
                    "replica assignments must cover partitions 0..n exactly once".into(),
                ));
            }
            assignments = Some(a.into_iter().map(|(_, b)| b).collect::<Vec<_>>());
        }
        let (partitions, rf) = (t.num_partitions, t.replication_factor);
        let result = match bad_config {
            _ if !ctx.may_create_topic(&name) => Err(AdminError::Unauthorized(ResourceType::Topic)),
            Some(msg) => Err(if assigned {
                AdminError::InvalidReplicationFactor(msg)
            } else {
                AdminError::InvalidConfig(msg)
            }),
            None => match mutations.admit(ctx.broker.cluster.topic(&name).is_none()) {
                Err(e) => Err(e),
                Ok(()) => {
                    let cluster = Arc::clone(&ctx.broker.cluster);
                    let new = NewTopic {
                        name: name.clone(),
                        partitions,
                        replication_factor: rf,
                        configs: configs.clone(),
                        assignments,
                    };
                    let validate_only = req.validate_only;
                    blocking(move || cluster.create_topic(new, validate_only))
                        .await
                        .unwrap_or_else(|| Err(AdminError::Storage("task failed".into())))
                }
            },
        };
        let r = CreatableTopicResult::default().with_name(t.name);
        results.push(match result {
            Ok(topic) => {
                let created = if req.validate_only {
                    match (&t.assignments.len(), partitions) {
                        (n, _) if *n > 0 => *n as i32,
                        (_, -1) => ctx.broker.cluster.config.num_partitions,
                        (_, p) => p,
                    }
                } else {
                    topic.partition_count()
                };
                mutations.record(created.unsigned_abs());
                let cfg = ctx
                    .broker
                    .cluster
                    .topic_config_entries(&configs)
                    .into_iter()
                    .map(|e| {
                        CreatableTopicConfigs::default()
                            .with_name(sb(e.name))
                            .with_value(Some(sb(e.value)))
                            .with_config_source(e.source as i8)
                    })
                    .collect();
                r.with_topic_id(topic.id)
                    .with_error_message(None)
                    .with_num_partitions(created)
                    .with_replication_factor(topic.replication_factor)
                    // Configs are part of the response from v5 only.
                    .with_configs((ctx.version >= 5).then_some(cfg))
            }
            Err(e) => r
                .with_error_code(admin_error_code(&e).code())
                .with_error_message(admin_error_message(&e))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    Some(
        CreateTopicsResponse::default()
            .with_topics(results)
            .with_throttle_time_ms(mutations.throttle_ms()),
    )
}

/// DeleteTopics (by name, or by id from v6).
pub async fn delete_topics(
    ctx: &Ctx<'_>,
    req: DeleteTopicsRequest,
) -> Option<DeleteTopicsResponse> {
    let cluster = &ctx.broker.cluster;
    let mut targets: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    for t in &req.topics {
        targets.push((t.name.as_ref().map(|n| n.0.to_string()), t.topic_id));
    }
    let mut results = Vec::with_capacity(targets.len());
    let mut mutations = Mutations::new(ctx, 5);
    for (name, id) in targets {
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => cluster.topic_by_id(id).map(|t| t.name.clone()),
        };
        let r = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(sb(n))))
            .with_topic_id(id);
        let Some(resolved) = resolved else {
            results.push(r.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        let c = Arc::clone(cluster);
        let n = resolved.clone();
        let existing = cluster.topic(&resolved).map(|t| t.partition_count());
        let partitions = existing.unwrap_or(0);
        let outcome = match ctx
            .authorize(Operation::Delete, Resource::topic(&resolved))
            .and_then(|()| mutations.admit(existing.is_some()))
        {
            Ok(()) => blocking(move || c.delete_topic(&n))
                .await
                .unwrap_or_else(|| Err(AdminError::Storage("task failed".into()))),
            Err(e) => Err(e),
        };
        if outcome.is_ok() {
            mutations.record(partitions.unsigned_abs());
        }
        results.push(match outcome {
            Ok(topic_id) => r
                .with_name(Some(TopicName(sb(resolved))))
                .with_topic_id(topic_id),
            Err(e) => r
                .with_error_code(admin_error_code(&e).code())
                .with_error_message(admin_error_message(&e)),
        });
    }
    Some(
        DeleteTopicsResponse::default()
            .with_responses(results)
            .with_throttle_time_ms(mutations.throttle_ms()),
    )
}

/// CreatePartitions.
pub async fn create_partitions(
    ctx: &Ctx<'_>,
    req: CreatePartitionsRequest,
) -> Option<CreatePartitionsResponse> {
    let mut results = Vec::with_capacity(req.topics.len());
    let mut mutations = Mutations::new(ctx, 3);
    for t in req.topics {
        let c = Arc::clone(&ctx.broker.cluster);
        let name = t.name.0.to_string();
        let (count, validate_only) = (t.count, req.validate_only);
        // An empty list is how some encoders say "none" (the codec's default): place them.
        let assignment = t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| {
            a.iter()
                .map(|p| p.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let existing = c.topic(&name).map(|t| t.partition_count());
        let before = existing.unwrap_or(0);
        let outcome = match ctx
            .authorize(Operation::Alter, Resource::topic(&name))
            .and_then(|()| mutations.admit(existing.is_some()))
        {
            Ok(()) => {
                blocking(move || c.create_partitions(&name, count, assignment, validate_only))
                    .await
                    .unwrap_or_else(|| Err(AdminError::Storage("task failed".into())))
            }
            Err(e) => Err(e),
        };
        if outcome.is_ok() {
            // Partitions only grow; a topic recreated meanwhile counts as nothing added.
            mutations.record(u32::try_from(count - before).unwrap_or(0));
        }
        let r = CreatePartitionsTopicResult::default().with_name(t.name);
        results.push(match outcome {
            Ok(()) => r,
            Err(e) => r
                .with_error_code(admin_error_code(&e).code())
                .with_error_message(admin_error_message(&e)),
        });
    }
    Some(
        CreatePartitionsResponse::default()
            .with_results(results)
            .with_throttle_time_ms(mutations.throttle_ms()),
    )
}
