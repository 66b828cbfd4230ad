//! The admin API of principals, as the operator's KafkaUser reconcile uses it: ACL bindings
//! (DescribeAcls, CreateAcls, DeleteAcls), SCRAM credentials (AlterUserScramCredentials,
//! salted here as Kafka's own admin client does) and a user's client quotas
//! (DescribeClientQuotas, AlterClientQuotas).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterUserScramCredentialsRequest, CreateAclsRequest,
    DeleteAclsRequest, DescribeAclsRequest, DescribeClientQuotasRequest,
};
use kafka_protocol::protocol::StrBytes;
use ring::rand::{SecureRandom, SystemRandom};

use crate::admin::{Admin, AdminError};
use crate::scram::ScramMechanism;

/// Kafka's wire codes of ACL filters: "any" resource type, pattern, operation, permission.
const ANY: i8 = 1;
/// The entity type of a user's quotas.
const USER_ENTITY: &str = "user";
/// DescribeClientQuotas match type: exactly this name.
const MATCH_EXACT: i8 = 0;

/// One ACL binding, with Kafka's wire codes: resource type (2 topic, 3 group, 4 cluster, 5
/// transactional id), pattern type (3 literal, 4 prefixed), operation (2 all, 3 read, 4
/// write, ...) and permission (2 deny, 3 allow).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AclBinding {
    /// Resource type code.
    pub resource_type: i8,
    /// Resource name (`kafka-cluster` for the cluster).
    pub resource_name: String,
    /// Pattern type code.
    pub pattern_type: i8,
    /// `User:<name>`.
    pub principal: String,
    /// Host, `*` for any.
    pub host: String,
    /// Operation code.
    pub operation: i8,
    /// Permission code.
    pub permission: i8,
}

impl Admin {
    /// Every ACL binding of `principal`.
    pub async fn acls_of(&mut self, principal: &str) -> Result<BTreeSet<AclBinding>, AdminError> {
        // kafka-protocol's defaults for these nullable filters are "" (match nothing), not
        // null (match anything): every field is set.
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(ANY)
            .with_resource_name_filter(None)
            .with_pattern_type_filter(ANY)
            .with_host_filter(None)
            .with_principal_filter(Some(StrBytes::from_string(principal.to_string())))
            .with_operation(ANY)
            .with_permission_type(ANY);
        let what = || format!("describing the ACLs of {principal}");
        let resp = self.send(req, &what).await?;
        AdminError::check(resp.error_code, resp.error_message.as_ref(), what)?;
        Ok(resp
            .resources
            .iter()
            .flat_map(|r| {
                r.acls.iter().map(move |a| AclBinding {
                    resource_type: r.resource_type,
                    resource_name: r.resource_name.to_string(),
                    pattern_type: r.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                })
            })
            .collect())
    }

    /// Creates `acls`; the first refused one is the error.
    pub async fn create_acls(&mut self, acls: &[AclBinding]) -> Result<(), AdminError> {
        if acls.is_empty() {
            return Ok(());
        }
        let creations = acls
            .iter()
            .map(|a| {
                AclCreation::default()
                    .with_resource_type(a.resource_type)
                    .with_resource_name(StrBytes::from_string(a.resource_name.clone()))
                    .with_resource_pattern_type(a.pattern_type)
                    .with_principal(StrBytes::from_string(a.principal.clone()))
                    .with_host(StrBytes::from_string(a.host.clone()))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission)
            })
            .collect();
        let what = || "creating ACLs".to_string();
        let resp = self
            .send(
                CreateAclsRequest::default().with_creations(creations),
                &what,
            )
            .await?;
        for (result, acl) in resp.results.iter().zip(acls) {
            AdminError::check(result.error_code, result.error_message.as_ref(), || {
                format!("creating the ACL {acl:?}")
            })?;
        }
        Ok(())
    }

    /// Deletes exactly `acls` (each filter matches one binding).
    pub async fn delete_acls(&mut self, acls: &[AclBinding]) -> Result<(), AdminError> {
        if acls.is_empty() {
            return Ok(());
        }
        let filters = acls
            .iter()
            .map(|a| {
                DeleteAclsFilter::default()
                    .with_resource_type_filter(a.resource_type)
                    .with_resource_name_filter(Some(StrBytes::from_string(a.resource_name.clone())))
                    .with_pattern_type_filter(a.pattern_type)
                    .with_principal_filter(Some(StrBytes::from_string(a.principal.clone())))
                    .with_host_filter(Some(StrBytes::from_string(a.host.clone())))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission)
            })
            .collect();
        let what = || "deleting ACLs".to_string();
        let resp = self
            .send(DeleteAclsRequest::default().with_filters(filters), &what)
            .await?;
        for (result, acl) in resp.filter_results.iter().zip(acls) {
            AdminError::check(result.error_code, result.error_message.as_ref(), || {
                format!("deleting the ACL {acl:?}")
            })?;
        }
        Ok(())
    }

    /// Sets `user`'s `mechanism` credential to `password`, salted here with a new random salt
    /// and `iterations` rounds (Kafka's minimum is 4096).
    pub async fn upsert_scram(
        &mut self,
        user: &str,
        mechanism: ScramMechanism,
        password: &str,
        iterations: i32,
    ) -> Result<(), AdminError> {
        let mut salt = [0u8; 32];
        SystemRandom::new().fill(&mut salt).map_err(|_| {
            AdminError::local(
                format!("salting the password of {user}"),
                "the system random source failed",
            )
        })?;
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let upsertion = ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(user.to_string()))
            .with_mechanism(mechanism.id())
            .with_iterations(iterations)
            .with_salt(Bytes::copy_from_slice(&salt))
            .with_salted_password(Bytes::from(salted));
        let req = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]);
        let what = || format!("setting the {} credential of {user}", mechanism.name());
        let resp = self.send(req, &what).await?;
        for r in &resp.results {
            AdminError::check(r.error_code, r.error_message.as_ref(), what)?;
        }
        Ok(())
    }

    /// Deletes `user`'s `mechanism` credential; false when it had none.
    pub async fn delete_scram(
        &mut self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> Result<bool, AdminError> {
        let deletion = ScramCredentialDeletion::default()
            .with_name(StrBytes::from_string(user.to_string()))
            .with_mechanism(mechanism.id());
        let req = AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]);
        let what = || format!("deleting the {} credential of {user}", mechanism.name());
        let resp = self.send(req, &what).await?;
        for r in &resp.results {
            if ResponseError::try_from_code(r.error_code) == Some(ResponseError::ResourceNotFound) {
                return Ok(false);
            }
            AdminError::check(r.error_code, r.error_message.as_ref(), what)?;
        }
        Ok(true)
    }

    /// The quotas set for `user` itself (not its defaults), by key (`producer_byte_rate`,
    /// `consumer_byte_rate`, `request_percentage`, `controller_mutation_rate`).
    pub async fn user_quotas(&mut self, user: &str) -> Result<BTreeMap<String, f64>, AdminError> {
        let component = ComponentData::default()
            .with_entity_type(StrBytes::from_static_str(USER_ENTITY))
            .with_match_type(MATCH_EXACT)
            .with_match(Some(StrBytes::from_string(user.to_string())));
        let req = DescribeClientQuotasRequest::default()
            .with_components(vec![component])
            .with_strict(true);
        let what = || format!("describing the quotas of {user}");
        let resp = self.send(req, &what).await?;
        AdminError::check(resp.error_code, resp.error_message.as_ref(), what)?;
        Ok(resp
            .entries
            .unwrap_or_default()
            .iter()
            .flat_map(|e| e.values.iter())
            .map(|v| (v.key.to_string(), v.value))
            .collect())
    }

    /// Sets `set` and removes `remove` among `user`'s quotas.
    pub async fn alter_user_quotas(
        &mut self,
        user: &str,
        set: &BTreeMap<String, f64>,
        remove: &[String],
    ) -> Result<(), AdminError> {
        let mut ops: Vec<OpData> = set
            .iter()
            .map(|(k, v)| {
                OpData::default()
                    .with_key(StrBytes::from_string(k.clone()))
                    .with_value(*v)
            })
            .collect();
        ops.extend(remove.iter().map(|k| {
            OpData::default()
                .with_key(StrBytes::from_string(k.clone()))
                .with_remove(true)
        }));
        if ops.is_empty() {
            return Ok(());
        }
        let entity = EntityData::default()
            .with_entity_type(StrBytes::from_static_str(USER_ENTITY))
            .with_entity_name(Some(StrBytes::from_string(user.to_string())));
        let req = AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
            .with_entity(vec![entity])
            .with_ops(ops)]);
        let what = || format!("altering the quotas of {user}");
        let resp = self.send(req, &what).await?;
        for e in &resp.entries {
            AdminError::check(e.error_code, e.error_message.as_ref(), what)?;
        }
        Ok(())
    }
}
