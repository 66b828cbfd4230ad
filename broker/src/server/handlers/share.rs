//! Share groups on the wire (KIP-932): ShareGroupHeartbeat and ShareGroupDescribe at the group
//! coordinator; ShareFetch and ShareAcknowledge at the partition leaders, which hold the
//! share-partitions ([`crate::share`]); and the admin APIs `kafka-share-groups` uses
//! (DescribeShareGroupOffsets, AlterShareGroupOffsets, DeleteShareGroupOffsets).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, LeaderIdAndEpoch, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::blocking;
use super::consumer_groups::membership_written;
use super::groups::group_denied;
use crate::authz::{Operation, Resource};
use crate::cluster::Partition;
use crate::log::batch::BatchHeader;
use crate::server::dispatch::{sb, Ctx};
use crate::share::coordinator::Op;
use crate::share::partition::SharePartition;
use crate::share::partition::{AcquireMode, Acquired, Fetch, ReadBatch, Renewal, RENEW};
use crate::share::{AutoReset, Key, SessionStep, Settings, SharePartitions};

/// ShareGroupHeartbeat: joins, heartbeats and leaves a share group.
pub async fn share_group_heartbeat(
    ctx: &Ctx<'_>,
    req: ShareGroupHeartbeatRequest,
) -> Option<ShareGroupHeartbeatResponse> {
    use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
    let group = req.group_id.0.to_string();
    let refuse = |e: ResponseError, message: Option<String>| {
        if let Some(m) = &message {
            tracing::debug!(client_id = %ctx.client_id, group = %group, error = ?e, "ShareGroupHeartbeat refused: {m}");
        }
        Some(
            ShareGroupHeartbeatResponse::default()
                .with_error_code(e.code())
                .with_error_message(message.map(sb))
                .with_member_epoch(-1),
        )
    };
    if let Some(e) = group_denied(ctx, Operation::Read, &group) {
        return refuse(e, None);
    }
    if !ctx.broker.groups.coordinates(&group) {
        return refuse(ResponseError::NotCoordinator, None);
    }
    let subscribed = req.subscribed_topic_names.as_ref().map(|names| {
        names
            .iter()
            .map(|n| n.0.to_string())
            .filter(|n| ctx.authorized(Operation::Describe, Resource::topic(n)))
            .collect::<BTreeSet<String>>()
    });
    let hb = crate::share::group::Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        subscribed,
        client_id: ctx.client_id.to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
    };
    let coordinator = Arc::clone(&ctx.broker.groups);
    let id = group.clone();
    let answer = match membership_written(ctx, move || coordinator.share_heartbeat(&id, hb)).await {
        Ok(a) => a,
        Err((e, message)) => return refuse(e, message),
    };
    let cluster = &ctx.broker.cluster;
    let assignment = answer.assignment.map(|parts| {
        Assignment::default().with_topic_partitions(
            by_topic(&parts)
                .into_iter()
                .filter_map(|(t, ps)| {
                    Some(
                        TopicPartitions::default()
                            .with_topic_id(cluster.topic(t)?.id)
                            .with_partitions(ps),
                    )
                })
                .collect(),
        )
    });
    let settings = ctx.broker.groups.share_settings(&group);
    Some(
        ShareGroupHeartbeatResponse::default()
            .with_member_id(Some(req.member_id))
            .with_member_epoch(answer.member_epoch)
            .with_heartbeat_interval_ms(settings.heartbeat_interval_ms)
            .with_assignment(assignment),
    )
}

/// `(topic, partition)` pairs grouped by topic.
fn by_topic(parts: &BTreeSet<(String, i32)>) -> BTreeMap<&str, Vec<i32>> {
    let mut out: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in parts {
        out.entry(t).or_default().push(*p);
    }
    out
}

/// ShareGroupDescribe: what `kafka-share-groups --describe --members` shows.
pub async fn share_group_describe(
    ctx: &Ctx<'_>,
    req: ShareGroupDescribeRequest,
) -> Option<ShareGroupDescribeResponse> {
    use kafka_protocol::messages::share_group_describe_response::{
        Assignment, DescribedGroup, Member, TopicPartitions,
    };
    let cluster = &ctx.broker.cluster;
    let groups = req
        .group_ids
        .iter()
        .map(|id| {
            let base = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(i32::MIN);
            if let Some(e) = group_denied(ctx, Operation::Describe, id) {
                return base.with_error_code(e.code());
            }
            if !ctx.broker.groups.coordinates(id) {
                return base.with_error_code(ResponseError::NotCoordinator.code());
            }
            let Some(g) = ctx.broker.groups.describe_share_group(id) else {
                let message = if ctx.broker.groups.describe(id).is_some() {
                    format!("Group {} is not a share group.", id.as_str())
                } else {
                    format!("Group {} not found.", id.as_str())
                };
                return base
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(sb(message)));
            };
            let members = g
                .members
                .iter()
                .map(|(mid, m)| {
                    let assignment = Assignment::default().with_topic_partitions(
                        by_topic(&m.assignment)
                            .into_iter()
                            .filter_map(|(t, ps)| {
                                Some(
                                    TopicPartitions::default()
                                        .with_topic_id(cluster.topic(t)?.id)
                                        .with_topic_name(TopicName(sb(t.to_string())))
                                        .with_partitions(ps),
                                )
                            })
                            .collect(),
                    );
                    Member::default()
                        .with_member_id(sb(mid.clone()))
                        .with_rack_id(m.rack_id.clone().map(sb))
                        .with_member_epoch(m.epoch)
                        .with_client_id(sb(m.client_id.clone()))
                        .with_client_host(sb(m.client_host.clone()))
                        .with_subscribed_topic_names(
                            m.subscribed
                                .iter()
                                .map(|t| TopicName(sb(t.clone())))
                                .collect(),
                        )
                        .with_assignment(assignment)
                })
                .collect();
            base.with_group_state(sb(g.state().to_string()))
                .with_group_epoch(g.group_epoch)
                .with_assignment_epoch(g.assignment_epoch)
                .with_assignor_name(sb(crate::share::group::ASSIGNOR.to_string()))
                .with_members(members)
        })
        .collect();
    Some(ShareGroupDescribeResponse::default().with_groups(groups))
}

/// Acknowledgement batches of one partition: `((first, last), types)`.
type Acks = Vec<((i64, i64), Vec<i8>)>;

/// Acknowledgement batches by (topic id, partition).
type AcksByPartition = BTreeMap<(Uuid, i32), Acks>;

/// Where a share-partition without state starts, under `reset`: the log start, the high
/// watermark, or the first record at most the duration old.
fn initial_offset(p: &Partition, reset: AutoReset) -> i64 {
    match reset {
        AutoReset::Earliest => p.log_start_offset(),
        AutoReset::Latest => p.high_watermark(),
        AutoReset::ByDuration(d) => {
            let since = crate::cluster::now_ms() - d.as_millis() as i64;
            p.log()
                .and_then(|log| log.offset_for_timestamp(since).ok().flatten())
                .map_or_else(|| p.high_watermark(), |(offset, _)| offset)
        }
    }
}

/// The partition `index` of the topic with id `topic_id` if this node leads it and the client
/// may read it, else the error to answer for it.
fn share_partition_of(
    ctx: &Ctx<'_>,
    topic_id: Uuid,
    index: i32,
) -> Result<Arc<Partition>, ResponseError> {
    let cluster = &ctx.broker.cluster;
    let topic = cluster
        .topic_by_id(topic_id)
        .ok_or(ResponseError::UnknownTopicId)?;
    if !ctx.authorized(Operation::Read, Resource::topic(&topic.name)) {
        return Err(ResponseError::TopicAuthorizationFailed);
    }
    let p = topic
        .partition(index)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    if p.offline_reason().is_some() {
        return Err(ResponseError::KafkaStorageError);
    }
    if !p.is_led_by(ctx.broker.node_id()) {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    Ok(p)
}

/// Applies `member`'s acknowledgements of one partition (RENEWs where the request may carry
/// them: `renew`); the error to answer, if any.
fn acknowledge(
    shares: &SharePartitions,
    (group, member): (&str, &str),
    key: (Uuid, i32),
    (acks, renew): (&Acks, bool),
    settings: &Settings,
) -> Option<ResponseError> {
    let sp = shares.get(&(group.to_string(), key.0, key.1))?;
    let mut sp = sp.lock();
    let now = Instant::now();
    let limit = settings.limits.delivery_count_limit;
    sp.expire_locks(now, limit);
    let renewal = match (renew, settings.renew_enabled) {
        (false, _) => Renewal::NotInRequest,
        (true, false) => Renewal::Disabled,
        (true, true) => Renewal::Until(now + settings.limits.lock_duration),
    };
    let mut error = None;
    for (range, types) in acks {
        if let Err(e) = sp.acknowledge(member, *range, types, (limit, renewal)) {
            error = Some(e);
        }
    }
    if acks
        .iter()
        .any(|(_, t)| t.contains(&crate::share::partition::RELEASE))
    {
        shares.released.notify_waiters();
    }
    error
}

/// Applies `member`'s acknowledgements of one partition led here and persists the
/// share-partition's new state with its share coordinator before answering; the error to
/// answer, if any. Renewed locks change nothing persisted: renewals alone write nothing.
async fn acknowledge_and_persist(
    ctx: &Ctx<'_>,
    who: (&str, &str),
    key: (Uuid, i32),
    acks: (&Acks, bool),
    settings: &Settings,
) -> Option<ResponseError> {
    let p = match share_partition_of(ctx, key.0, key.1) {
        Ok(p) => p,
        Err(e) => return Some(e),
    };
    let shares = &ctx.broker.groups.shares;
    if let Some(e) = acknowledge(shares, who, key, acks, settings) {
        return Some(e);
    }
    if acks
        .0
        .iter()
        .all(|(_, types)| types.iter().all(|&t| t == RENEW))
    {
        return None;
    }
    persist_state(ctx, &(who.0.to_string(), key.0, key.1), p.leader_epoch()).await
}

/// Writes share-partition `key`'s state to its share coordinator. Writes of one
/// share-partition go one at a time, each with the state as it is when it goes, so the last
/// one written is the newest. A reset since this state was read (FENCED_STATE_EPOCH) drops it
/// here, to be read again.
async fn persist_state(ctx: &Ctx<'_>, key: &Key, leader_epoch: i32) -> Option<ResponseError> {
    let groups = &ctx.broker.groups;
    let order = groups.shares.write_order(key);
    let _order = order.lock().await;
    let sp = groups.shares.get(key)?;
    let (state_epoch, (start_offset, batches)) = {
        let sp = sp.lock();
        (sp.state_epoch, sp.state())
    };
    let op = Op::Write {
        state_epoch,
        leader_epoch,
        start_offset,
        batches,
    };
    match groups.share_states.call(key, op).await {
        Ok(_) => None,
        Err(ResponseError::FencedStateEpoch) => {
            groups.shares.forget(key);
            Some(ResponseError::InvalidRecordState)
        }
        Err(e) => Some(e),
    }
}

/// Makes sure this node holds the state of each share-partition in `leading`: read from its
/// share coordinator, or, when there is none yet, started from `share.auto.offset.reset` and
/// written. A session opening (`reopen`) checks the state of partitions nobody holds records
/// of against their coordinator, so a reset (a newer state epoch) or a delete made through
/// another broker is seen; otherwise the live state, newer than what was written, stays.
/// Returns the partitions whose state could not be had (logged at debug).
async fn load_states(
    ctx: &Ctx<'_>,
    group: &str,
    leading: &[((Uuid, i32), Arc<Partition>)],
    reopen: bool,
    settings: &Settings,
) -> Vec<(Uuid, i32)> {
    let groups = &ctx.broker.groups;
    let mut failed = Vec::new();
    for (key, p) in leading {
        let k: Key = (group.to_string(), key.0, key.1);
        let live = groups.shares.get(&k);
        let live_epoch = match &live {
            Some(sp) if !reopen || sp.lock().has_acquired() => continue,
            Some(sp) => Some(sp.lock().state_epoch),
            None => None,
        };
        let read = groups.share_states.call(&k, Op::Read).await;
        if let (Some(epoch), Ok(Some(s))) = (live_epoch, &read) {
            if s.state_epoch <= epoch {
                continue;
            }
        }
        groups.shares.forget(&k);
        match read {
            Ok(Some(s)) if s.start_offset >= 0 => {
                let sp = SharePartition::from_state(s.state_epoch, s.start_offset, &s.batches);
                groups.shares.adopt(&k, sp);
            }
            Ok(_) => {
                let start = initial_offset(p, settings.auto_reset);
                groups.shares.adopt(&k, SharePartition::starting_at(start));
                if let Some(e) = persist_state(ctx, &k, p.leader_epoch()).await {
                    tracing::debug!(group, error = ?e, "the new share-partition state was not persisted yet");
                }
            }
            Err(e) => {
                tracing::debug!(group, partition = key.1, error = ?e, "share-partition state not available yet");
                failed.push(*key);
            }
        }
    }
    failed
}

/// What one share fetch read from one partition.
struct Fetched {
    records: Bytes,
    acquired: Vec<Acquired>,
}

impl Fetched {
    /// Nothing.
    fn none() -> Fetched {
        Fetched {
            records: Bytes::new(),
            acquired: Vec::new(),
        }
    }
}

/// Batches read from a partition's log for a share fetch.
struct ReadWindow {
    bytes: Bytes,
    /// Each batch's offsets, and whether it is never delivered.
    batches: Vec<ReadBatch>,
    /// Where each batch ends in `bytes`.
    ends: Vec<usize>,
}

/// Reads `p`'s batches in `from..to` (about `max_bytes`); under read_committed, batches of
/// aborted transactions are marked never to be delivered, as are control batches.
fn read_batches(
    p: &Partition,
    (from, to): (i64, i64),
    max_bytes: usize,
    read_committed: bool,
) -> Result<ReadWindow, ResponseError> {
    let log = p
        .log()
        .ok_or_else(|| super::log_error_code(&p.missing_log()))?;
    let bytes = log
        .read(from, max_bytes, to)
        .map_err(|e| super::log_error_code(&e))?;
    let aborted = if read_committed {
        log.aborted_transactions(from, to)
    } else {
        Vec::new()
    };
    drop(log);
    let aborted_batch = |h: &BatchHeader| {
        h.is_transactional()
            && aborted.iter().any(|a| {
                a.producer_id == h.producer_id
                    && a.first_offset <= h.base_offset
                    && h.last_offset() < a.last_offset
            })
    };
    let mut batches = Vec::new();
    let mut ends = Vec::new();
    let mut at = 0usize;
    while let Some(h) = BatchHeader::parse(&bytes[at..]) {
        let end = at + h.total_len();
        if end > bytes.len() {
            break;
        }
        batches.push(ReadBatch {
            base: h.base_offset,
            last: h.last_offset(),
            skip: h.is_control() || aborted_batch(&h),
        });
        ends.push(end);
        at = end;
    }
    Ok(ReadWindow {
        bytes,
        batches,
        ends,
    })
}

/// Acquires records of `p` for `member` (blocking: reads the log): redeliveries first, then
/// new records up to the high watermark (the last stable offset under read_committed), at
/// most `max_records` (batch-aligned) and about `max_bytes`.
fn fetch_partition(
    shares: &SharePartitions,
    (group, member): (&str, &str),
    (key, p): ((Uuid, i32), &Partition),
    (max_records, max_bytes): (usize, usize),
    (batch_size, mode): (usize, AcquireMode),
    settings: &Settings,
) -> Result<Fetched, ResponseError> {
    let Some(sp) = shares.get(&(group.to_string(), key.0, key.1)) else {
        // Forgotten meanwhile (reset, or fenced): read again on the next fetch.
        return Ok(Fetched::none());
    };
    let mut sp = sp.lock();
    let now = Instant::now();
    let limits = settings.limits;
    sp.expire_locks(now, limits.delivery_count_limit);
    let log_start = p.log_start_offset();
    sp.clamp_to_log_start(log_start);
    let upper = if settings.read_committed {
        p.last_stable_offset()
    } else {
        p.high_watermark()
    };
    let (redeliver, throttled) = sp.redeliverable(max_records, limits.delivery_count_limit);
    let read_new = !throttled
        && sp.may_read_new(redeliver.len(), max_records, &limits)
        && sp.end_offset() < upper;
    let Some(from) = redeliver
        .first()
        .copied()
        .or(read_new.then(|| sp.end_offset()))
    else {
        return Ok(Fetched::none());
    };
    let window_end = sp.end_offset();
    let to = if read_new {
        upper
    } else {
        // Redelivered records lie in batches already read: reading stops at the end of the
        // last one's in-flight batch (a log batch's end), or else of the in-flight window (a
        // bound short of a redelivered record's log batch end would leave that batch out).
        redeliver
            .last()
            .and_then(|&o| sp.batch_end(o))
            .map_or(window_end, |e| (e + 1).min(window_end))
    };
    let mut read = read_batches(p, (from, to), max_bytes, settings.read_committed)?;
    let covered = |batches: &[ReadBatch]| {
        let last = redeliver.last().copied().unwrap_or(i64::MIN);
        batches.last().is_some_and(|b| b.last >= last)
    };
    if !read_new && to < window_end && !covered(&read.batches) {
        read = read_batches(p, (from, window_end), max_bytes, settings.read_committed)?;
    }
    let ReadWindow {
        bytes,
        batches,
        ends,
    } = read;
    let (acquired, used) = sp.acquire(
        member,
        &redeliver,
        &batches,
        Fetch {
            read_new,
            max_records,
            batch_size,
            mode,
        },
        now,
        &limits,
    );
    let records = match used {
        0 => Bytes::new(),
        n => bytes.slice(..ends[n - 1]),
    };
    Ok(Fetched { records, acquired })
}

/// The share session step of a request, or the top-level error to answer.
fn open_session(
    ctx: &Ctx<'_>,
    (group, member): (&str, &str),
    epoch: i32,
    add: &[(Uuid, i32)],
    forget: &[(Uuid, i32)],
) -> Result<SessionStep, (ResponseError, String)> {
    if group.is_empty() {
        return Err((
            ResponseError::InvalidGroupId,
            "the group id is empty".into(),
        ));
    }
    if member.is_empty() {
        return Err((
            ResponseError::InvalidRequest,
            "the member id is empty".into(),
        ));
    }
    if let Some(e) = group_denied(ctx, Operation::Read, group) {
        return Err((e, format!("not authorized to read group {group}")));
    }
    ctx.broker
        .groups
        .shares
        .session((group, member), ctx.peer, epoch, add, forget)
        .map_err(|e| {
            let message = match e {
                ResponseError::ShareSessionNotFound => {
                    format!("member {member} of group {group} has no share session here")
                }
                _ => format!("share session epoch {epoch} is not the session's next epoch"),
            };
            (e, message)
        })
}

/// The group and member a ShareFetch or ShareAcknowledge names (empty when null).
fn who(group: Option<&GroupId>, member: Option<&StrBytes>) -> (String, String) {
    (
        group.map(|g| g.0.to_string()).unwrap_or_default(),
        member.map(|m| m.to_string()).unwrap_or_default(),
    )
}

/// A ShareFetch's acknowledgements by partition, and every partition it names.
fn requested(req: &ShareFetchRequest) -> (AcksByPartition, Vec<(Uuid, i32)>) {
    let mut acks = AcksByPartition::new();
    let mut add = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            add.push((t.topic_id, p.partition_index));
            if !p.acknowledgement_batches.is_empty() {
                acks.entry((t.topic_id, p.partition_index))
                    .or_default()
                    .extend(
                        p.acknowledgement_batches.iter().map(|b| {
                            ((b.first_offset, b.last_offset), b.acknowledge_types.clone())
                        }),
                    );
            }
        }
    }
    (acks, add)
}

/// How much a ShareFetch asks for.
struct FetchLimits {
    max_records: usize,
    batch_size: usize,
    max_bytes: usize,
}

/// The limits and acquire mode of a ShareFetch, or why it is an invalid request: a renewing
/// fetch (KIP-1222) asks for nothing, and the mode is one Kafka knows.
fn fetch_limits(
    req: &ShareFetchRequest,
    renew: bool,
) -> Result<(FetchLimits, AcquireMode), String> {
    let sizes = [
        ("maxBytes", req.max_bytes),
        ("minBytes", req.min_bytes),
        ("maxRecords", req.max_records),
        ("maxWaitMs", req.max_wait_ms),
    ];
    let set: Vec<&str> = sizes
        .iter()
        .filter(|(_, v)| *v != 0)
        .map(|(n, _)| *n)
        .collect();
    if renew && !set.is_empty() {
        return Err(format!(
            "{} must be set to 0 if isRenewAck is true.",
            set.join(", ")
        ));
    }
    let mode = match req.share_acquire_mode {
        0 => AcquireMode::BatchOptimized,
        1 => AcquireMode::RecordLimit,
        m => {
            return Err(format!(
                "unknown share acquire mode {m} (0: batch_optimized, 1: record_limit)"
            ))
        }
    };
    let positive = |v: i32| usize::try_from(v).ok().filter(|&v| v > 0);
    let max_records = positive(req.max_records).unwrap_or(500);
    let limits = FetchLimits {
        max_records,
        batch_size: positive(req.batch_size).unwrap_or(max_records),
        max_bytes: positive(req.max_bytes).unwrap_or(usize::MAX),
    };
    Ok((limits, mode))
}

/// ShareFetch: acknowledges what the request carries, then acquires records for the member
/// from every partition of its share session, waiting up to MaxWaitMs for some.
pub async fn share_fetch(ctx: &Ctx<'_>, req: ShareFetchRequest) -> Option<ShareFetchResponse> {
    let (group, member) = who(req.group_id.as_ref(), req.member_id.as_ref());
    let settings = ctx.broker.groups.share_settings(&group);
    let lock_ms = settings.limits.lock_duration.as_millis() as i32;
    let refuse = |e: ResponseError, message: String| {
        tracing::debug!(client_id = %ctx.client_id, group = %group, error = ?e, "ShareFetch refused: {message}");
        Some(
            ShareFetchResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(sb(message)))
                .with_acquisition_lock_timeout_ms(lock_ms),
        )
    };
    let (acks, add) = requested(&req);
    let renew = ctx.version >= 2 && req.is_renew_ack;
    let (limits, mode) = match fetch_limits(&req, renew) {
        Ok(l) => l,
        Err(message) => return refuse(ResponseError::InvalidRequest, message),
    };
    if req.share_session_epoch == 0 && !acks.is_empty() {
        return refuse(
            ResponseError::InvalidRequest,
            "acknowledgements cannot open a share session (epoch 0)".into(),
        );
    }
    let forget: Vec<(Uuid, i32)> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |&p| (t.topic_id, p)))
        .collect();
    let step = match open_session(
        ctx,
        (&group, &member),
        req.share_session_epoch,
        &add,
        &forget,
    ) {
        Ok(s) => s,
        Err((e, m)) => return refuse(e, m),
    };
    let shares = &ctx.broker.groups.shares;
    let mut out: BTreeMap<(Uuid, i32), PartitionData> = BTreeMap::new();
    for (key, batches) in &acks {
        let mut d = PartitionData::default().with_partition_index(key.1);
        let error =
            acknowledge_and_persist(ctx, (&group, &member), *key, (batches, renew), &settings)
                .await;
        if let Some(e) = error {
            d = d.with_acknowledge_error_code(e.code());
        }
        out.insert(*key, d);
    }
    let partitions = match step {
        SessionStep::Closed => {
            ctx.broker.groups.release_share_member(&group, &member);
            return Some(share_fetch_response(out, lock_ms));
        }
        // A renewing fetch only acknowledges (KIP-1222).
        SessionStep::Open(_) if renew => return Some(share_fetch_response(out, lock_ms)),
        SessionStep::Open(p) => p,
    };
    let mut leading = Vec::new();
    for key in partitions {
        match share_partition_of(ctx, key.0, key.1) {
            Ok(p) => leading.push((key, p)),
            Err(e) => {
                let d = out
                    .remove(&key)
                    .unwrap_or_else(|| PartitionData::default().with_partition_index(key.1));
                out.insert(key, not_served(ctx, d, e, key));
            }
        }
    }
    let reopen = req.share_session_epoch == 0;
    // A share-partition whose state cannot be had yet (its share coordinator is still being
    // created, loaded or elected) gives no records this time; the member fetches again. Kafka's
    // share consumer takes a coordinator error on a partition as fatal, so none is answered.
    let unloaded = load_states(ctx, &group, &leading, reopen, &settings).await;
    leading.retain(|(k, _)| !unloaded.contains(k));
    let FetchLimits {
        max_records,
        batch_size,
        max_bytes,
    } = limits;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut appends = ctx.broker.cluster.subscribe_appends();
    let leading = Arc::new(leading);
    let rotation = usize::try_from(req.share_session_epoch).unwrap_or(0);
    let (group_arc, member_arc) = (Arc::new(group.clone()), Arc::new(member.clone()));
    loop {
        appends.borrow_and_update();
        let released = shares.released.notified();
        let groups = Arc::clone(&ctx.broker.groups);
        let (l, g, m) = (
            Arc::clone(&leading),
            Arc::clone(&group_arc),
            Arc::clone(&member_arc),
        );
        let fetched = blocking(move || {
            let mut budget = max_records;
            let mut bytes = max_bytes;
            // The partitions take turns at going first (Kafka rotates them by the session
            // epoch), so one with plenty of records cannot starve the others.
            l.iter()
                .cycle()
                .skip(rotation % l.len().max(1))
                .take(l.len())
                .map(|(key, p)| {
                    if budget == 0 {
                        // The fetch has the records it asked for (Kafka passes the rest, 0).
                        return (*key, Ok(Fetched::none()));
                    }
                    let r = fetch_partition(
                        &groups.shares,
                        (&g, &m),
                        (*key, p),
                        (budget, bytes.max(1)),
                        (batch_size, mode),
                        &settings,
                    );
                    if let Ok(f) = &r {
                        let n: i64 = f.acquired.iter().map(|a| a.last - a.first + 1).sum();
                        budget = budget.saturating_sub(n as usize);
                        bytes = bytes.saturating_sub(f.records.len());
                    }
                    (*key, r)
                })
                .collect::<Vec<_>>()
        })
        .await?;
        let got = fetched
            .iter()
            .any(|(_, r)| r.as_ref().map_or(true, |f| !f.acquired.is_empty()));
        if got || !out.is_empty() || tokio::time::Instant::now() >= deadline {
            for (key, r) in fetched {
                let d = out
                    .remove(&key)
                    .unwrap_or_else(|| PartitionData::default().with_partition_index(key.1));
                let d = match r {
                    Ok(f) if f.acquired.is_empty() => {
                        if d == PartitionData::default().with_partition_index(key.1) {
                            continue;
                        }
                        d
                    }
                    Ok(f) => d.with_records(Some(f.records)).with_acquired_records(
                        f.acquired
                            .iter()
                            .map(|a| {
                                AcquiredRecords::default()
                                    .with_first_offset(a.first)
                                    .with_last_offset(a.last)
                                    .with_delivery_count(a.deliveries)
                            })
                            .collect(),
                    ),
                    Err(e) => not_served(ctx, d, e, key),
                };
                out.insert(key, d);
            }
            ctx.broker.metrics.fetch_bytes.inc_by(
                out.values()
                    .filter_map(|d| d.records.as_ref())
                    .map(|r| r.len() as u64)
                    .sum(),
            );
            return Some(share_fetch_response(out, lock_ms));
        }
        tokio::select! {
            changed = appends.changed() => if changed.is_err() {
                return Some(share_fetch_response(out, lock_ms));
            },
            _ = released => {},
            _ = tokio::time::sleep_until(deadline) => {},
        }
    }
}

/// `d` answering `error` for partition `key`, with the current leader when it moved.
fn not_served(
    ctx: &Ctx<'_>,
    d: PartitionData,
    error: ResponseError,
    key: (Uuid, i32),
) -> PartitionData {
    let leader = (error == ResponseError::NotLeaderOrFollower)
        .then(|| ctx.broker.cluster.topic_by_id(key.0))
        .flatten()
        .and_then(|t| t.partition(key.1))
        .map(|p| p.state());
    let d = d.with_error_code(error.code());
    match leader {
        Some(s) => d.with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(s.leader)
                .with_leader_epoch(s.leader_epoch),
        ),
        None => d,
    }
}

fn share_fetch_response(
    out: BTreeMap<(Uuid, i32), PartitionData>,
    lock_ms: i32,
) -> ShareFetchResponse {
    let mut topics: Vec<ShareFetchableTopicResponse> = Vec::new();
    for ((topic, _), d) in out {
        match topics.last_mut() {
            Some(t) if t.topic_id == topic => t.partitions.push(d),
            _ => topics.push(
                ShareFetchableTopicResponse::default()
                    .with_topic_id(topic)
                    .with_partitions(vec![d]),
            ),
        }
    }
    ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(lock_ms)
        .with_responses(topics)
}

/// ShareAcknowledge: acknowledges records without fetching more; epoch -1 also closes the
/// member's share session, giving back what it still holds.
pub async fn share_acknowledge(
    ctx: &Ctx<'_>,
    req: ShareAcknowledgeRequest,
) -> Option<ShareAcknowledgeResponse> {
    use kafka_protocol::messages::share_acknowledge_response::{
        PartitionData as AckData, ShareAcknowledgeTopicResponse,
    };
    let (group, member) = who(req.group_id.as_ref(), req.member_id.as_ref());
    let refuse = |e: ResponseError, message: String| {
        tracing::debug!(client_id = %ctx.client_id, group = %group, error = ?e, "ShareAcknowledge refused: {message}");
        Some(
            ShareAcknowledgeResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(sb(message))),
        )
    };
    if req.share_session_epoch == 0 {
        return refuse(
            ResponseError::InvalidShareSessionEpoch,
            "ShareAcknowledge cannot open a share session (epoch 0)".into(),
        );
    }
    let step = match open_session(ctx, (&group, &member), req.share_session_epoch, &[], &[]) {
        Ok(s) => s,
        Err((e, m)) => return refuse(e, m),
    };
    let settings = ctx.broker.groups.share_settings(&group);
    let renew = ctx.version >= 2 && req.is_renew_ack;
    let mut topics = Vec::new();
    for t in &req.topics {
        let mut parts = Vec::new();
        for p in &t.partitions {
            let acks: Acks = p
                .acknowledgement_batches
                .iter()
                .map(|b| ((b.first_offset, b.last_offset), b.acknowledge_types.clone()))
                .collect();
            let key = (t.topic_id, p.partition_index);
            let error =
                acknowledge_and_persist(ctx, (&group, &member), key, (&acks, renew), &settings)
                    .await;
            parts.push(
                AckData::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error.map_or(0, |e| e.code())),
            );
        }
        topics.push(
            ShareAcknowledgeTopicResponse::default()
                .with_topic_id(t.topic_id)
                .with_partitions(parts),
        );
    }
    if step == SessionStep::Closed {
        ctx.broker.groups.release_share_member(&group, &member);
    }
    Some(
        ShareAcknowledgeResponse::default()
            .with_acquisition_lock_timeout_ms(settings.limits.lock_duration.as_millis() as i32)
            .with_responses(topics),
    )
}
