//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and describe for the
//! broker, whose configs are static: deleting one is a no-op, setting one is refused). Resource
//! types: 2 = topic, 4 = broker.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{admin_error_code, blocking};
use crate::cluster::topic_config::effective_topic_configs;
use crate::cluster::AdminError;
use crate::server::dispatch::{sb, Ctx};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

/// DescribeConfigs.
pub async fn describe_configs(
    ctx: &Ctx<'_>,
    req: DescribeConfigsRequest,
) -> Option<DescribeConfigsResponse> {
    let cluster = &ctx.broker.cluster;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .as_ref()
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |k: &str| keys.as_ref().is_none_or(|ks| ks.iter().any(|x| x == k));
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries: Vec<(String, String, i8, bool)> = match r.resource_type {
                TOPIC => match cluster.topic(&r.resource_name) {
                    None => {
                        return base
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(sb(format!(
                                "topic {} does not exist",
                                r.resource_name.as_str()
                            ))))
                    }
                    Some(t) => effective_topic_configs(&cluster.config, &t.configs.read())
                        .into_iter()
                        // Source 1 = dynamic topic config, 5 = default.
                        .map(|(k, v, d)| (k, v, if d { 5 } else { 1 }, false))
                        .collect(),
                },
                BROKER => {
                    if r.resource_name.as_str() != ctx.broker.node_id().to_string()
                        && !r.resource_name.is_empty()
                    {
                        return base
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(sb("unknown broker id")));
                    }
                    cluster
                        .config
                        .raw
                        .iter()
                        // Source 4 = static broker config.
                        .map(|(k, v)| (k.clone(), v.clone(), 4, true))
                        .collect()
                }
                other => {
                    return base
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(sb(format!("unsupported resource type {other}"))))
                }
            };
            base.with_configs(
                entries
                    .into_iter()
                    .filter(|(k, ..)| wanted(k))
                    .map(|(k, v, source, read_only)| {
                        DescribeConfigsResourceResult::default()
                            .with_name(sb(k))
                            .with_value(Some(sb(v)))
                            .with_config_source(source)
                            .with_read_only(read_only)
                    })
                    .collect(),
            )
        })
        .collect();
    Some(DescribeConfigsResponse::default().with_results(results))
}

async fn apply(
    ctx: &Ctx<'_>,
    resource_type: i8,
    name: &str,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), AdminError>,
    validate_only: bool,
) -> Result<(), AdminError> {
    if resource_type != TOPIC {
        return Err(AdminError::InvalidConfig(
            "only topic configs can be altered; broker configs are static".into(),
        ));
    }
    let cluster = Arc::clone(&ctx.broker.cluster);
    let topic = cluster
        .topic(name)
        .ok_or_else(|| AdminError::UnknownTopic(name.to_string()))?;
    let mut configs = topic.configs.read().clone();
    change(&mut configs)?;
    let name = name.to_string();
    blocking(move || cluster.set_topic_configs(&name, configs, validate_only))
        .await
        .unwrap_or_else(|| Err(AdminError::Storage("task failed".into())))
}

fn result(
    r: AlterConfigsResourceResponse,
    outcome: Result<(), AdminError>,
) -> AlterConfigsResourceResponse {
    match outcome {
        Ok(()) => r,
        Err(e) => r
            .with_error_code(admin_error_code(&e).code())
            .with_error_message(Some(sb(e.to_string()))),
    }
}

/// AlterConfigs: replaces a topic's overrides.
pub async fn alter_configs(
    ctx: &Ctx<'_>,
    req: AlterConfigsRequest,
) -> Option<AlterConfigsResponse> {
    let mut out = Vec::new();
    for r in req.resources {
        let entries: Vec<(String, Option<String>)> = r
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = apply(
            ctx,
            r.resource_type,
            &r.resource_name,
            |cfg| {
                cfg.clear();
                for (k, v) in entries {
                    if let Some(v) = v {
                        cfg.insert(k, v);
                    }
                }
                Ok(())
            },
            req.validate_only,
        )
        .await;
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        out.push(result(base, outcome));
    }
    Some(AlterConfigsResponse::default().with_responses(out))
}

/// IncrementalAlterConfigs: SET (0), DELETE (1); APPEND (2) / SUBTRACT (3) on list values.
pub async fn incremental_alter_configs(
    ctx: &Ctx<'_>,
    req: IncrementalAlterConfigsRequest,
) -> Option<IncrementalAlterConfigsResponse> {
    let mut out = Vec::new();
    for r in req.resources {
        let ops: Vec<(String, i8, Option<String>)> = r
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        // Gregor has no dynamic broker configs, so deleting one is already done; Kafka's
        // reassignment tool clears its replication throttles this way after every --verify.
        let deletes_only = ops.iter().all(|(_, op, _)| *op == 1);
        let outcome = if r.resource_type == BROKER && deletes_only {
            Ok(())
        } else {
            apply(
                ctx,
                r.resource_type,
                &r.resource_name,
                |cfg| {
                    for (k, op, v) in ops {
                        match (op, v) {
                            (0, Some(v)) => {
                                cfg.insert(k, v);
                            }
                            (1, _) => {
                                cfg.remove(&k);
                            }
                            (2, Some(v)) => {
                                let cur = cfg.get(&k).cloned().unwrap_or_default();
                                let mut items: Vec<String> = cur
                                    .split(',')
                                    .filter(|s| !s.is_empty())
                                    .map(str::to_string)
                                    .collect();
                                for i in v.split(',').filter(|s| !s.is_empty()) {
                                    if !items.iter().any(|x| x == i) {
                                        items.push(i.to_string());
                                    }
                                }
                                cfg.insert(k, items.join(","));
                            }
                            (3, Some(v)) => {
                                let remove: Vec<&str> = v.split(',').collect();
                                let cur = cfg.get(&k).cloned().unwrap_or_default();
                                let items: Vec<&str> = cur
                                    .split(',')
                                    .filter(|s| !s.is_empty() && !remove.contains(s))
                                    .collect();
                                cfg.insert(k, items.join(","));
                            }
                            (op, _) => {
                                return Err(AdminError::InvalidConfig(format!(
                                    "invalid operation {op} (or missing value) for config {k}"
                                )))
                            }
                        }
                    }
                    Ok(())
                },
                req.validate_only,
            )
            .await
        };
        let base = kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        out.push(match outcome {
            Ok(()) => base,
            Err(e) => base
                .with_error_code(admin_error_code(&e).code())
                .with_error_message(Some(sb(e.to_string()))),
        });
    }
    Some(IncrementalAlterConfigsResponse::default().with_responses(out))
}
