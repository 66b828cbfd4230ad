//! FindCoordinator and the classic group APIs, translating between the wire and
//! [`crate::group::GroupCoordinator`].

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::*;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::blocking;
use super::offsets::OFFSET_COMMIT_TIMEOUT;
use crate::authz::{Operation, Resource};
use crate::group::{JoinRequest, JoinResult};
use crate::server::dispatch::{sb, Ctx};

fn code(e: Option<ResponseError>) -> i16 {
    e.map(|e| e.code()).unwrap_or(0)
}

/// GROUP_AUTHORIZATION_FAILED when the principal may not perform `op` on group `group`.
pub(super) fn group_denied(ctx: &Ctx<'_>, op: Operation, group: &str) -> Option<ResponseError> {
    (!ctx.authorized(op, Resource::group(group))).then_some(ResponseError::GroupAuthorizationFailed)
}

/// FindCoordinator: the coordinator of a group (key type 0) is the leader of its
/// `__consumer_offsets` partition, that of a transactional id (key type 1) the leader of its
/// `__transaction_state` partition, that of a share-partition (key type 2, the key
/// `group:topicId:partition`) the leader of its `__share_group_state` partition; each topic
/// is created on first use.
pub async fn find_coordinator(
    ctx: &Ctx<'_>,
    req: FindCoordinatorRequest,
) -> Option<FindCoordinatorResponse> {
    let ready = match req.key_type {
        0 => {
            let groups = Arc::clone(&ctx.broker.groups);
            blocking(move || groups.ensure_offsets_topic().is_ok()).await
        }
        1 => {
            let txns = Arc::clone(&ctx.broker.txns);
            blocking(move || txns.ensure_state_topic().is_ok()).await
        }
        2 => {
            let shares = Arc::clone(&ctx.broker.groups.share_states);
            blocking(move || shares.ensure_state_topic().is_ok()).await
        }
        _ => Some(true),
    }
    .unwrap_or(false);
    let brokers = ctx.broker.cluster.brokers();
    // Said in the response, never a bare INVALID_REQUEST: a client (a share consumer) shows it.
    let unsupported = (req.key_type > 2).then(|| {
        let kind = format!("unknown coordinator key type {}", req.key_type);
        tracing::debug!(client_id = %ctx.client_id, key_type = req.key_type, "FindCoordinator refused: {kind}");
        format!("FindCoordinator key type {}: {kind}", req.key_type)
    });
    let message = |e: ResponseError| {
        (e == ResponseError::InvalidRequest)
            .then(|| unsupported.clone().map(sb))
            .flatten()
    };
    let locate = |key: &str| -> Result<(i32, String, i32), ResponseError> {
        match req.key_type {
            0 => group_denied(ctx, Operation::Describe, key).map_or(Ok(()), Err)?,
            1 if !ctx.authorized(Operation::Describe, Resource::transactional_id(key)) => {
                return Err(ResponseError::TransactionalIdAuthorizationFailed)
            }
            1 => {}
            // Share coordinators are looked up by brokers: CLUSTER_ACTION, as in Kafka.
            2 if !ctx.authorized(Operation::ClusterAction, Resource::cluster()) => {
                return Err(ResponseError::ClusterAuthorizationFailed)
            }
            2 => {}
            _ => return Err(ResponseError::InvalidRequest),
        }
        if !ready {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let leader = match req.key_type {
            0 => ctx.broker.groups.coordinator_for(key),
            1 => ctx.broker.txns.coordinator_for(key),
            _ => ctx.broker.groups.share_states.coordinator_for(key),
        };
        let leader = leader.unwrap_or(ctx.broker.node_id());
        // As Kafka: the coordinator's address on the listener this request came through; a
        // fenced coordinator or one without that listener is not available.
        match brokers
            .get(&leader)
            .filter(|b| !b.fenced)
            .and_then(|b| b.endpoint(ctx.listener))
        {
            Some((host, port)) => Ok((leader, host.to_string(), i32::from(port))),
            None => Err(ResponseError::CoordinatorNotAvailable),
        }
    };
    if ctx.version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|k| {
                let c = Coordinator::default().with_key(k.clone());
                match locate(k) {
                    Ok((id, host, port)) => c
                        .with_node_id(BrokerId(id))
                        .with_host(sb(host))
                        .with_port(port),
                    Err(e) => c
                        .with_node_id(BrokerId(-1))
                        .with_host(sb(""))
                        .with_port(-1)
                        .with_error_code(e.code())
                        .with_error_message(message(e)),
                }
            })
            .collect();
        return Some(FindCoordinatorResponse::default().with_coordinators(coordinators));
    }
    Some(match locate(&req.key) {
        Ok((id, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(id))
            .with_host(sb(host))
            .with_port(port),
        Err(e) => FindCoordinatorResponse::default()
            .with_error_code(e.code())
            .with_error_message(message(e))
            .with_node_id(BrokerId(-1))
            .with_host(sb(""))
            .with_port(-1),
    })
}

fn join_response(r: JoinResult) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(code(r.error))
        .with_generation_id(r.generation_id)
        .with_protocol_type(r.protocol_type.map(sb))
        .with_protocol_name(r.protocol_name.map(sb))
        .with_leader(sb(r.leader))
        .with_member_id(sb(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|(id, instance, meta)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(sb(id))
                        .with_group_instance_id(instance.map(sb))
                        .with_metadata(meta)
                })
                .collect(),
        )
}

/// JoinGroup (waits for the rebalance to complete).
pub async fn join_group(ctx: &Ctx<'_>, req: JoinGroupRequest) -> Option<JoinGroupResponse> {
    if let Some(e) = group_denied(ctx, Operation::Read, &req.group_id.0) {
        return Some(JoinGroupResponse::default().with_error_code(e.code()));
    }
    if !ctx.broker.groups.coordinates(&req.group_id.0) {
        return Some(
            JoinGroupResponse::default().with_error_code(ResponseError::NotCoordinator.code()),
        );
    }
    let jr = JoinRequest {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|s| s.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        rebalance_timeout_ms: if ctx.version == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: ctx.version >= 4,
    };
    // The coordinator appends what changed to __consumer_offsets: off the async runtime.
    let coordinator = Arc::clone(&ctx.broker.groups);
    let joined = blocking(move || coordinator.join(jr)).await;
    let Some(joined) = joined else {
        return Some(
            JoinGroupResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code()),
        );
    };
    let result = match joined {
        Ok(r) => r,
        Err(rx) => rx.await.unwrap_or_else(|_| JoinResult {
            error: Some(ResponseError::RebalanceInProgress),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: String::new(),
            members: Vec::new(),
        }),
    };
    Some(join_response(result))
}

/// SyncGroup (followers wait for the leader's assignment).
pub async fn sync_group(ctx: &Ctx<'_>, req: SyncGroupRequest) -> Option<SyncGroupResponse> {
    if let Some(e) = group_denied(ctx, Operation::Read, &req.group_id.0) {
        return Some(SyncGroupResponse::default().with_error_code(e.code()));
    }
    if !ctx.broker.groups.coordinates(&req.group_id.0) {
        return Some(
            SyncGroupResponse::default().with_error_code(ResponseError::NotCoordinator.code()),
        );
    }
    let assignments: Vec<(String, Bytes)> = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let coordinator = Arc::clone(&ctx.broker.groups);
    let (group, member, instance) =
        owned_member(&req.group_id, &req.member_id, &req.group_instance_id);
    let generation = req.generation_id;
    let synced = blocking(move || {
        let member = (member.as_str(), instance.as_deref());
        coordinator.sync(&group, member, generation, assignments)
    })
    .await;
    let outcome = match synced {
        Some(Ok(r)) => r,
        Some(Err(rx)) => rx.await.unwrap_or(Err(ResponseError::RebalanceInProgress)),
        None => Err(ResponseError::CoordinatorNotAvailable),
    };
    // The generation's GroupMetadata was written when the leader's assignment arrived: as
    // Kafka's coordinator, answer once the ISR has it, so the generation outlives a failover.
    let outcome = match (outcome, ctx.broker.groups.written(&req.group_id.0)) {
        (Ok(assignment), Some(written)) => written
            .committed(ctx.broker.node_id(), OFFSET_COMMIT_TIMEOUT)
            .await
            .map(|()| assignment),
        (outcome, _) => outcome,
    };
    Some(match outcome {
        Ok(assignment) => SyncGroupResponse::default()
            .with_protocol_type(req.protocol_type)
            .with_protocol_name(req.protocol_name)
            .with_assignment(assignment),
        Err(e) => SyncGroupResponse::default().with_error_code(e.code()),
    })
}

/// A request's group id, member id and instance id, owned (to move to the blocking pool).
fn owned_member(
    group: &GroupId,
    member: &StrBytes,
    instance: &Option<StrBytes>,
) -> (String, String, Option<String>) {
    (
        group.0.to_string(),
        member.to_string(),
        instance.as_ref().map(ToString::to_string),
    )
}

/// Heartbeat.
pub async fn heartbeat(ctx: &Ctx<'_>, req: HeartbeatRequest) -> Option<HeartbeatResponse> {
    if let Some(e) = group_denied(ctx, Operation::Read, &req.group_id.0) {
        return Some(HeartbeatResponse::default().with_error_code(e.code()));
    }
    if !ctx.broker.groups.coordinates(&req.group_id.0) {
        return Some(
            HeartbeatResponse::default().with_error_code(ResponseError::NotCoordinator.code()),
        );
    }
    let coordinator = Arc::clone(&ctx.broker.groups);
    let (group, member, instance) =
        owned_member(&req.group_id, &req.member_id, &req.group_instance_id);
    let generation = req.generation_id;
    let e =
        blocking(move || coordinator.heartbeat(&group, (&member, instance.as_deref()), generation))
            .await
            .unwrap_or(Some(ResponseError::CoordinatorNotAvailable));
    Some(HeartbeatResponse::default().with_error_code(code(e)))
}

/// LeaveGroup (v0–2 one member, v3+ a batch).
pub async fn leave_group(ctx: &Ctx<'_>, req: LeaveGroupRequest) -> Option<LeaveGroupResponse> {
    if let Some(e) = group_denied(ctx, Operation::Read, &req.group_id.0) {
        return Some(LeaveGroupResponse::default().with_error_code(e.code()));
    }
    if !ctx.broker.groups.coordinates(&req.group_id.0) {
        return Some(
            LeaveGroupResponse::default().with_error_code(ResponseError::NotCoordinator.code()),
        );
    }
    let leave = |ids: Vec<(String, Option<String>)>| {
        let coordinator = Arc::clone(&ctx.broker.groups);
        let group = req.group_id.0.to_string();
        async move {
            blocking(move || coordinator.leave(&group, &ids))
                .await
                .ok_or(())
        }
    };
    // The blocking task failed: the whole request is answered COORDINATOR_NOT_AVAILABLE
    // (retriable).
    let unavailable = LeaveGroupResponse::default()
        .with_error_code(ResponseError::CoordinatorNotAvailable.code());
    if ctx.version < 3 {
        let Ok(e) = leave(vec![(req.member_id.to_string(), None)]).await else {
            return Some(unavailable);
        };
        return Some(
            LeaveGroupResponse::default().with_error_code(code(e.into_iter().next().flatten())),
        );
    }
    let ids: Vec<(String, Option<String>)> = req
        .members
        .iter()
        .map(|m| {
            let instance = m.group_instance_id.as_ref().map(ToString::to_string);
            (m.member_id.to_string(), instance)
        })
        .collect();
    let Ok(errors) = leave(ids).await else {
        return Some(unavailable);
    };
    let members = req
        .members
        .into_iter()
        .zip(errors)
        .map(|(m, e)| {
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(code(e))
        })
        .collect();
    Some(LeaveGroupResponse::default().with_members(members))
}

/// DescribeGroups.
pub async fn describe_groups(
    ctx: &Ctx<'_>,
    req: DescribeGroupsRequest,
) -> Option<DescribeGroupsResponse> {
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            let base = DescribedGroup::default().with_group_id(g.clone());
            if let Some(e) = group_denied(ctx, Operation::Describe, &g.0) {
                return base.with_error_code(e.code());
            }
            // KIP-430 (v3+): what the principal may do with the group.
            let base = if ctx.version >= 3 && req.include_authorized_operations {
                base.with_authorized_operations(ctx.authorized_operations(Resource::group(&g.0)))
            } else {
                base
            };
            match ctx.broker.groups.describe(&g.0) {
                None => base.with_group_state(sb("Dead")),
                Some(d) => base
                    .with_group_state(sb(d.state.as_str()))
                    .with_protocol_type(sb(d.protocol_type))
                    .with_protocol_data(sb(d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(sb(m.member_id))
                                    .with_group_instance_id(m.group_instance_id.map(sb))
                                    .with_client_id(sb(m.client_id))
                                    .with_client_host(sb(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    Some(DescribeGroupsResponse::default().with_groups(groups))
}

/// ListGroups (with the v4 state filter).
pub async fn list_groups(ctx: &Ctx<'_>, req: ListGroupsRequest) -> Option<ListGroupsResponse> {
    let lower =
        |v: &[StrBytes]| -> Vec<String> { v.iter().map(|s| s.to_ascii_lowercase()).collect() };
    let (states, types) = (lower(&req.states_filter), lower(&req.types_filter));
    let groups = ctx
        .broker
        .groups
        .list()
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state.to_ascii_lowercase()))
        .filter(|g| types.is_empty() || types.contains(&g.group_type.to_string()))
        // As Kafka: DESCRIBE on the cluster lists every group, else those the principal may
        // DESCRIBE.
        .filter(|g| {
            ctx.authorized(Operation::Describe, Resource::cluster())
                || group_denied(ctx, Operation::Describe, &g.id).is_none()
        })
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(sb(g.id)))
                .with_protocol_type(sb(g.protocol_type))
                .with_group_state(sb(g.state))
                .with_group_type(sb(g.group_type))
        })
        .collect();
    Some(ListGroupsResponse::default().with_groups(groups))
}

/// Before an empty share group is deleted, the persisted state of its share-partitions.
async fn delete_share_states(ctx: &Ctx<'_>, group: &str) -> Option<ResponseError> {
    let groups = &ctx.broker.groups;
    let share = groups.describe_share_group(group)?;
    if !share.members.is_empty() {
        return Some(ResponseError::NonEmptyGroup);
    }
    let cluster = &ctx.broker.cluster;
    let mut keys: Vec<crate::share::Key> = share
        .initialized
        .iter()
        .filter_map(|(t, p)| Some((group.to_string(), cluster.topic(t)?.id, *p)))
        .collect();
    for ((topic, p), _) in groups.shares.of_group(group) {
        keys.push((group.to_string(), topic, p));
    }
    keys.sort();
    keys.dedup();
    super::share_offsets::delete_states(ctx, &keys).await
}

/// DeleteGroups (of a share group, with its share-partitions' state).
pub async fn delete_groups(
    ctx: &Ctx<'_>,
    req: DeleteGroupsRequest,
) -> Option<DeleteGroupsResponse> {
    let mut results = Vec::new();
    for g in req.groups_names {
        let coordinator = Arc::clone(&ctx.broker.groups);
        let id = g.0.to_string();
        let e = match group_denied(ctx, Operation::Delete, &id) {
            Some(e) => Some(e),
            None => match delete_share_states(ctx, &id).await {
                Some(e) => Some(e),
                None => blocking(move || coordinator.delete_group(&id))
                    .await
                    .unwrap_or(Some(ResponseError::KafkaStorageError)),
            },
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code(e)),
        );
    }
    Some(DeleteGroupsResponse::default().with_results(results))
}
