//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and brokers. Resource
//! types: 2 = topic, 4 = broker (`""` the cluster-wide dynamic default, `"<id>"` one broker).
//! Broker resources take the dynamic keys of [`crate::config::DYNAMIC_BROKER_KEYS`], stored in
//! the metadata log like topic configs; describing one reports Kafka's sources and synonyms.
//! Type 32 = group: a group's own `consumer.*` / `share.*` / `streams.*` configs
//! ([`crate::share::check_group_configs`]), committed in the metadata log too.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{admin_error_code, blocking};
use crate::authz::{Operation, Resource};
use crate::cluster::topic_config::ConfigEntry;
use crate::cluster::AdminError;
use crate::config::dynamic::listener_ssl_key;
use crate::config::{is_dynamic_broker_key, Config};
use crate::server::dispatch::{sb, Ctx};
use crate::server::Broker;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// A group's configs (KIP-848, KIP-932): session and heartbeat settings, share settings.
const GROUP: i8 = 32;

fn describe_entry(
    e: ConfigEntry,
    read_only: bool,
    synonyms: bool,
) -> DescribeConfigsResourceResult {
    // Passwords and inline keys are described without their value, as Kafka does.
    let sensitive = crate::config::ssl::is_sensitive_key(&e.name);
    let shown = |v: String| (!sensitive).then(|| sb(v));
    let synonyms = if synonyms {
        e.synonyms
            .into_iter()
            .map(|s| {
                DescribeConfigsSynonym::default()
                    .with_name(sb(s.name))
                    .with_value(shown(s.value))
                    .with_source(s.source as i8)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(sb(e.name))
        .with_value(shown(e.value))
        .with_is_sensitive(sensitive)
        .with_config_source(e.source as i8)
        .with_read_only(read_only)
        .with_synonyms(synonyms)
}

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
            let fail = |e: ResponseError, message: String| {
                base.clone()
                    .with_error_code(e.code())
                    .with_error_message(Some(sb(message)))
            };
            if let Err(e) = authorize_configs(ctx, r.resource_type, &r.resource_name, false) {
                return fail(admin_error_code(&e), e.to_string());
            }
            let entries: Vec<(ConfigEntry, bool)> = match r.resource_type {
                TOPIC => match cluster.topic(&r.resource_name) {
                    None => {
                        return fail(
                            ResponseError::UnknownTopicOrPartition,
                            format!("topic {} does not exist", r.resource_name.as_str()),
                        )
                    }
                    Some(t) => cluster
                        .topic_config_entries(&t.configs.read())
                        .into_iter()
                        .map(|e| (e, false))
                        .collect(),
                },
                GROUP => crate::share::group_config_entries(
                    &cluster.config,
                    &cluster.group_configs(&r.resource_name),
                )
                .into_iter()
                .map(|e| (e, false))
                .collect(),
                BROKER => match cluster.broker_config_entries(&r.resource_name) {
                    Err(e) => return fail(admin_error_code(&e), e.to_string()),
                    Ok(entries) => entries
                        .into_iter()
                        .map(|e| {
                            let read_only = !is_dynamic_broker_key(&e.name)
                                && listener_ssl_key(&e.name).is_none();
                            (e, read_only)
                        })
                        .collect(),
                },
                other => {
                    tracing::debug!(client_id = %ctx.client_id, resource_type = other, "DescribeConfigs refused: unsupported resource type");
                    return fail(
                        ResponseError::InvalidRequest,
                        format!("unsupported resource type {other}"),
                    );
                }
            };
            base.with_configs(
                entries
                    .into_iter()
                    .filter(|(e, _)| wanted(&e.name))
                    .map(|(e, read_only)| describe_entry(e, read_only, req.include_synonyms))
                    .collect(),
            )
        })
        .collect();
    Some(DescribeConfigsResponse::default().with_results(results))
}

/// Checks a BROKER resource name as Kafka's forwarding broker does (`ConfigAdminManager`):
/// empty for the cluster default, else this broker's own id — a broker alters only its own
/// per-broker configs, so an id of another (or of no) broker is INVALID_REQUEST.
fn check_broker_resource(ctx: &Ctx<'_>, name: &str) -> Result<(), AdminError> {
    if name.is_empty() {
        return Ok(());
    }
    let me = ctx.broker.node_id();
    match name.parse::<i32>() {
        Err(_) => Err(AdminError::InvalidRequest(format!(
            "Node id must be an integer, but it is: {name}"
        ))),
        Ok(id) if id != me => Err(AdminError::InvalidRequest(format!(
            "Unexpected broker id, expected {me}, but received {name}"
        ))),
        Ok(_) => Ok(()),
    }
}

/// DESCRIBE_CONFIGS (or, when `alter`, ALTER_CONFIGS) on the topic, or on the cluster for a
/// BROKER resource, as Kafka checks them. Other resource types are refused later.
fn authorize_configs(
    ctx: &Ctx<'_>,
    resource_type: i8,
    name: &str,
    alter: bool,
) -> Result<(), AdminError> {
    let op = if alter {
        Operation::AlterConfigs
    } else {
        Operation::DescribeConfigs
    };
    match resource_type {
        TOPIC => ctx.authorize(op, Resource::topic(name)),
        BROKER => ctx.authorize(op, Resource::cluster()),
        GROUP => ctx.authorize(op, Resource::group(name)),
        _ => Ok(()),
    }
}

async fn apply(
    ctx: &Ctx<'_>,
    resource_type: i8,
    name: &str,
    change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), AdminError>,
    validate_only: bool,
) -> Result<(), AdminError> {
    authorize_configs(ctx, resource_type, name, true)?;
    let cluster = Arc::clone(&ctx.broker.cluster);
    let name = name.to_string();
    match resource_type {
        TOPIC => {
            let topic = cluster
                .topic(&name)
                .ok_or_else(|| AdminError::UnknownTopic(name.clone()))?;
            let mut configs = topic.configs.read().clone();
            change(&mut configs)?;
            blocking(move || cluster.set_topic_configs(&name, configs, validate_only)).await
        }
        GROUP => {
            if name.is_empty() {
                return Err(AdminError::InvalidRequest("the group id is empty".into()));
            }
            let mut configs = cluster.group_configs(&name);
            change(&mut configs)?;
            blocking(move || cluster.set_group_configs(&name, configs, validate_only)).await
        }
        BROKER => {
            check_broker_resource(ctx, &name)?;
            let mut configs = cluster.broker_configs(&name);
            change(&mut configs)?;
            let broker = Arc::clone(ctx.broker);
            blocking(move || {
                if name.is_empty() {
                    return cluster.set_broker_configs(&name, configs, validate_only);
                }
                // This broker's own configs: its listeners' TLS material is checked before
                // anything is committed, and put in use once it is.
                check_listener_tls(&broker, &cluster.effective_with(&name, &configs)?, &configs)?;
                cluster.set_broker_configs(&name, configs, validate_only)?;
                if !validate_only {
                    reconfigure_tls(&broker, &cluster.effective_config());
                }
                Ok(())
            })
            .await
        }
        other => {
            tracing::debug!(client_id = %ctx.client_id, resource_type = other, "config change refused: unsupported resource type");
            return Err(AdminError::InvalidRequest(format!(
                "Unknown resource type {other}"
            )));
        }
    }
    .unwrap_or_else(|| Err(AdminError::Storage("task failed".into())))
}

/// Checks what this broker's own dynamic `configs` do to its SSL client listeners (blocking:
/// reads files): each `listener.name.<l>.ssl.*` key names one of them, and every listener whose
/// TLS settings change under `next` gets material Kafka's SslFactory would take
/// ([`ReloadingAcceptor::validate`](crate::server::tls_reload::ReloadingAcceptor::validate)).
fn check_listener_tls(
    broker: &Broker,
    next: &Config,
    configs: &BTreeMap<String, String>,
) -> Result<(), AdminError> {
    let mut named = std::collections::BTreeSet::new();
    for key in configs.keys() {
        let Some((listener, _)) = listener_ssl_key(key) else {
            continue;
        };
        let name = listener.to_ascii_uppercase();
        named.insert(name.clone());
        if listener != name.to_ascii_lowercase() {
            return Err(AdminError::InvalidRequest(format!(
                "{key}: the listener prefix is lower case (listener.name.{}.)",
                name.to_ascii_lowercase()
            )));
        }
        if !broker.tls.contains_key(&name) {
            let ssl: Vec<&str> = broker.tls.keys().map(String::as_str).collect();
            return Err(AdminError::InvalidRequest(format!(
                "{key}: {name} is not an SSL client listener of broker {} (those are: [{}])",
                broker.node_id(),
                ssl.join(", ")
            )));
        }
    }
    // The listeners the update concerns: those it names, and those whose settings it changes
    // (a removed key brings the static one back). Another listener's files are its own
    // business, even if they changed in place.
    for (name, acceptor) in &broker.tls {
        let Some(ssl) = next.ssl_listeners.get(name) else {
            continue;
        };
        if named.contains(name) || !acceptor.serves(ssl) {
            acceptor.validate(ssl).map_err(AdminError::InvalidRequest)?;
        }
    }
    Ok(())
}

/// Puts `effective`'s TLS settings in use on every SSL client listener of `broker` (blocking),
/// and re-reads material changed in place: Kafka reloads a key store when AlterConfigs names
/// the path it already has.
fn reconfigure_tls(broker: &Broker, effective: &Config) {
    for (name, acceptor) in &broker.tls {
        let outcome = match effective.ssl_listeners.get(name) {
            Some(ssl) => acceptor.reconfigure(ssl),
            None => Ok(false),
        }
        .and_then(|changed| if changed { Ok(true) } else { acceptor.check() });
        crate::server::tls_reload::report(&broker.metrics, name, "a dynamic config", outcome);
    }
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

/// Every config of a TOPIC or BROKER resource with the value in force (its own, else the
/// default); empty for a resource that does not exist (`apply` refuses it).
fn current_values(ctx: &Ctx<'_>, resource_type: i8, name: &str) -> BTreeMap<String, String> {
    let cluster = &ctx.broker.cluster;
    let entries = match resource_type {
        TOPIC => cluster
            .topic(name)
            .map(|t| cluster.topic_config_entries(&t.configs.read()))
            .unwrap_or_default(),
        BROKER => cluster.broker_config_entries(name).unwrap_or_default(),
        GROUP => crate::share::group_config_entries(&cluster.config, &cluster.group_configs(name)),
        _ => Vec::new(),
    };
    entries.into_iter().map(|e| (e.name, e.value)).collect()
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
        // APPEND and SUBTRACT work on the value in force: a key the resource does not set has
        // its default (APPEND `compact` to a topic on the default `delete` gives
        // `delete,compact`, as in Kafka).
        let in_force = current_values(ctx, r.resource_type, &r.resource_name);
        // Deleting a key that is not set is a no-op: Kafka's reassignment tool clears its
        // replication throttles (never set on Gregor) this way after every --verify.
        let outcome = apply(
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
                            let cur = cfg
                                .get(&k)
                                .or_else(|| in_force.get(&k))
                                .cloned()
                                .unwrap_or_default();
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
                            let cur = cfg
                                .get(&k)
                                .or_else(|| in_force.get(&k))
                                .cloned()
                                .unwrap_or_default();
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
        .await;
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
