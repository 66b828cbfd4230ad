//! CreateAcls, DescribeAcls and DeleteAcls. Creating and deleting need ALTER on the cluster,
//! describing needs DESCRIBE; without an authorizer every request is answered
//! SECURITY_DISABLED, as Kafka does. Changes are committed through the metadata log.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{admin_error_code, blocking};
use crate::authz::{Acl, AclFilter, Operation, Resource, WireAcl};
use crate::cluster::AdminError;
use crate::server::dispatch::{sb, Ctx};

/// Kafka's message when no authorizer is configured.
const NO_AUTHORIZER: &str = "No Authorizer is configured.";

/// Whether the request may go on: `Err` carries the code and message every entry answers.
fn admitted(ctx: &Ctx<'_>, op: Operation) -> Result<(), (ResponseError, String)> {
    if ctx.broker.cluster.config.authorizer.is_none() {
        return Err((ResponseError::SecurityDisabled, NO_AUTHORIZER.into()));
    }
    ctx.authorize(op, Resource::cluster())
        .map_err(|e| (admin_error_code(&e), e.to_string()))
}

/// CreateAcls.
pub async fn create_acls(ctx: &Ctx<'_>, req: CreateAclsRequest) -> Option<CreateAclsResponse> {
    let failed = |e: ResponseError, message: &str| {
        AclCreationResult::default()
            .with_error_code(e.code())
            .with_error_message(Some(sb(message)))
    };
    if let Err((e, message)) = admitted(ctx, Operation::Alter) {
        let results = req.creations.iter().map(|_| failed(e, &message)).collect();
        return Some(CreateAclsResponse::default().with_results(results));
    }
    let parsed: Vec<Result<Acl, String>> = req
        .creations
        .iter()
        .map(|c| {
            Acl::from_wire(WireAcl {
                resource_type: c.resource_type,
                resource_name: Some(&c.resource_name),
                pattern_type: c.resource_pattern_type,
                principal: Some(&c.principal),
                host: Some(&c.host),
                operation: c.operation,
                permission: c.permission_type,
            })
            .map_err(|e| e.to_string())
        })
        .collect();
    let valid: Vec<Acl> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let cluster = Arc::clone(&ctx.broker.cluster);
    let committed = blocking(move || cluster.create_acls(&valid))
        .await
        .unwrap_or_else(|| Err(AdminError::Storage("task failed".into())));
    let results = parsed
        .into_iter()
        .map(|p| match (p, &committed) {
            (Err(message), _) => failed(ResponseError::InvalidRequest, &message),
            (Ok(_), Err(e)) => failed(admin_error_code(e), &e.to_string()),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    Some(CreateAclsResponse::default().with_results(results))
}

/// DescribeAcls: the matching ACLs grouped by resource pattern.
pub async fn describe_acls(
    ctx: &Ctx<'_>,
    req: DescribeAclsRequest,
) -> Option<DescribeAclsResponse> {
    let failed = |e: ResponseError, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(e.code())
            .with_error_message(Some(sb(message)))
    };
    if let Err((e, message)) = admitted(ctx, Operation::Describe) {
        return Some(failed(e, message));
    }
    let filter = match AclFilter::from_wire(WireAcl {
        resource_type: req.resource_type_filter,
        resource_name: req.resource_name_filter.as_deref(),
        pattern_type: req.pattern_type_filter,
        principal: req.principal_filter.as_deref(),
        host: req.host_filter.as_deref(),
        operation: req.operation,
        permission: req.permission_type,
    }) {
        Ok(f) => f,
        Err(e) => return Some(failed(ResponseError::InvalidRequest, e.to_string())),
    };
    let acls = ctx.broker.cluster.acls();
    let mut by_resource: BTreeMap<(i8, &str, i8), Vec<AclDescription>> = BTreeMap::new();
    for acl in acls.values().filter(|a| filter.matches(a)) {
        let key = (
            acl.resource_type.code(),
            acl.resource_name.as_str(),
            acl.pattern_type.code(),
        );
        by_resource.entry(key).or_default().push(
            AclDescription::default()
                .with_principal(sb(acl.principal.clone()))
                .with_host(sb(acl.host.clone()))
                .with_operation(acl.operation.code())
                .with_permission_type(acl.permission.code()),
        );
    }
    let resources = by_resource
        .into_iter()
        .map(|((kind, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(kind)
                .with_resource_name(sb(name))
                .with_pattern_type(pattern)
                .with_acls(acls)
        })
        .collect();
    Some(DescribeAclsResponse::default().with_resources(resources))
}

/// DeleteAcls: every ACL matching each filter goes, in one commit.
pub async fn delete_acls(ctx: &Ctx<'_>, req: DeleteAclsRequest) -> Option<DeleteAclsResponse> {
    let failed = |e: ResponseError, message: &str| {
        DeleteAclsFilterResult::default()
            .with_error_code(e.code())
            .with_error_message(Some(sb(message)))
    };
    if let Err((e, message)) = admitted(ctx, Operation::Alter) {
        let results = req.filters.iter().map(|_| failed(e, &message)).collect();
        return Some(DeleteAclsResponse::default().with_filter_results(results));
    }
    let parsed: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            AclFilter::from_wire(WireAcl {
                resource_type: f.resource_type_filter,
                resource_name: f.resource_name_filter.as_deref(),
                pattern_type: f.pattern_type_filter,
                principal: f.principal_filter.as_deref(),
                host: f.host_filter.as_deref(),
                operation: f.operation,
                permission: f.permission_type,
            })
            .map_err(|e| e.to_string())
        })
        .collect();
    let valid: Vec<AclFilter> = parsed.iter().filter_map(|p| p.clone().ok()).collect();
    let cluster = Arc::clone(&ctx.broker.cluster);
    let deleted = blocking(move || cluster.delete_acls(&valid))
        .await
        .unwrap_or_else(|| Err(AdminError::Storage("task failed".into())));
    let mut matched = match &deleted {
        Ok(m) => m.clone().into_iter(),
        Err(_) => Vec::new().into_iter(),
    };
    let results = parsed
        .into_iter()
        .map(|p| match (p, &deleted) {
            (Err(message), _) => failed(ResponseError::InvalidRequest, &message),
            (Ok(_), Err(e)) => failed(admin_error_code(e), &e.to_string()),
            (Ok(_), Ok(_)) => DeleteAclsFilterResult::default().with_matching_acls(
                matched
                    .next()
                    .unwrap_or_default()
                    .iter()
                    .map(matching)
                    .collect(),
            ),
        })
        .collect();
    Some(DeleteAclsResponse::default().with_filter_results(results))
}

fn matching(acl: &Acl) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(acl.resource_type.code())
        .with_resource_name(sb(acl.resource_name.clone()))
        .with_pattern_type(acl.pattern_type.code())
        .with_principal(sb(acl.principal.clone()))
        .with_host(sb(acl.host.clone()))
        .with_operation(acl.operation.code())
        .with_permission_type(acl.permission.code())
}
