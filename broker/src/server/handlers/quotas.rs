//! DescribeClientQuotas (DESCRIBE_CONFIGS on the cluster) and AlterClientQuotas
//! (ALTER_CONFIGS on the cluster): quota configs per user, client id, (user, client id) and IP,
//! committed through the metadata log with Kafka's checks (`quotas`).

use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlteredEntry,
};
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{admin_error_code, blocking};
use crate::authz::{Operation, Resource};
use crate::quotas::{self, Filter, QuotaEntity};
use crate::server::dispatch::{sb, Ctx};

/// DescribeClientQuotas: the entities the filter matches, with their values.
pub async fn describe_client_quotas(
    ctx: &Ctx<'_>,
    req: DescribeClientQuotasRequest,
) -> Option<DescribeClientQuotasResponse> {
    // Kafka answers an empty (not null) message on success.
    let response = DescribeClientQuotasResponse::default();
    let refused = |code: ResponseError, message: String| {
        Some(
            DescribeClientQuotasResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(sb(message)))
                .with_entries(None),
        )
    };
    if let Err(e) = ctx.authorize(Operation::DescribeConfigs, Resource::cluster()) {
        return refused(admin_error_code(&e), e.to_string());
    }
    let components: Vec<(&str, i8, Option<&str>)> = req
        .components
        .iter()
        .map(|c| (&*c.entity_type, c.match_type, c._match.as_deref()))
        .collect();
    let filter = match Filter::new(&components, req.strict) {
        Ok(f) => f,
        Err(e) if e.unsupported_type => {
            return refused(ResponseError::UnsupportedVersion, e.message)
        }
        Err(e) => return refused(ResponseError::InvalidRequest, e.message),
    };
    let entries = ctx
        .broker
        .cluster
        .client_quotas()
        .iter()
        .filter(|(entity, _)| filter.matches(entity))
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity
                        .0
                        .iter()
                        .map(|(t, name)| {
                            EntityData::default()
                                .with_entity_type(sb(t.name()))
                                .with_entity_name(name.as_deref().map(sb))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .iter()
                        .map(|(k, v)| ValueData::default().with_key(sb(k.as_str())).with_value(*v))
                        .collect(),
                )
        })
        .collect();
    Some(response.with_entries(Some(entries)))
}

/// One entry's changes, or why it is refused.
type EntryChanges = Result<Vec<(QuotaEntity, String, Option<f64>)>, (ResponseError, String)>;

/// Checks one entry of AlterClientQuotas: its entity, then each op's key and value.
fn entry_changes(entry: &alter_client_quotas_request::EntryData) -> EntryChanges {
    let invalid = |m: String| (ResponseError::InvalidRequest, m);
    let components: Vec<(&str, Option<&str>)> = entry
        .entity
        .iter()
        .map(|c| (&*c.entity_type, c.entity_name.as_deref()))
        .collect();
    let entity = quotas::entity(&components).map_err(invalid)?;
    let mut changes: Vec<(QuotaEntity, String, Option<f64>)> = Vec::new();
    for op in &entry.ops {
        if changes.iter().any(|(_, k, _)| **k == *op.key) {
            let names: Vec<String> = entity
                .0
                .iter()
                .map(|(t, n)| format!("{}={}", t.name(), n.as_deref().unwrap_or("null")))
                .collect();
            return Err(invalid(format!(
                "Ignoring duplicate entity ClientQuotaEntity(entries={{{}}})",
                names.join(", ")
            )));
        }
        if op.remove {
            // As Kafka: removing any key, even one never set or unknown, is accepted.
            changes.push((entity.clone(), op.key.to_string(), None));
        } else {
            quotas::check_value(&entity, &op.key, op.value).map_err(invalid)?;
            changes.push((entity.clone(), op.key.to_string(), Some(op.value)));
        }
    }
    Ok(changes)
}

/// AlterClientQuotas: each entry checked on its own; the valid ones commit together, unless
/// `validate_only`.
pub async fn alter_client_quotas(
    ctx: &Ctx<'_>,
    req: AlterClientQuotasRequest,
) -> Option<AlterClientQuotasResponse> {
    let denied = ctx
        .authorize(Operation::AlterConfigs, Resource::cluster())
        .err();
    let mut outcomes: Vec<Option<(ResponseError, String)>> = Vec::new();
    let mut changes = Vec::new();
    for entry in &req.entries {
        let checked = match &denied {
            Some(e) => Err((admin_error_code(e), e.to_string())),
            None => entry_changes(entry),
        };
        match checked {
            Ok(c) => {
                changes.extend(c);
                outcomes.push(None);
            }
            Err(refusal) => outcomes.push(Some(refusal)),
        }
    }
    if !changes.is_empty() && !req.validate_only {
        let cluster = ctx.broker.cluster.clone();
        if let Err(e) = blocking(move || cluster.alter_client_quotas(changes)).await? {
            for o in outcomes.iter_mut().filter(|o| o.is_none()) {
                *o = Some((admin_error_code(&e), e.to_string()));
            }
        }
    }
    let entries = req
        .entries
        .iter()
        .zip(outcomes)
        .map(|(entry, outcome)| {
            let (code, message) = match outcome {
                None => (0, None),
                Some((e, m)) => (e.code(), Some(sb(m))),
            };
            AlteredEntry::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_entity(
                    entry
                        .entity
                        .iter()
                        .map(|c| {
                            AlteredEntity::default()
                                .with_entity_type(c.entity_type.clone())
                                .with_entity_name(c.entity_name.clone())
                        })
                        .collect(),
                )
        })
        .collect();
    Some(AlterClientQuotasResponse::default().with_entries(entries))
}
