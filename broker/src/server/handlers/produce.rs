//! Produce and InitProducerId. A produce request's appends run in one blocking task; acks=1
//! answers once the leader has written them, acks=all once every ISR member has them (the high
//! watermark passed them), or NOT_LEADER_OR_FOLLOWER if the leadership moves first. acks=0
//! gets no response at all, as in Kafka.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::{blocking, log_error_code};
use crate::authz::{Operation, Resource, ResourceType};
use crate::cluster::{Cluster, Commit, Partition, Topic};
use crate::log::AppendOutcome;
use crate::metrics::Metrics;
use crate::server::dispatch::{sb, Ctx};
use crate::server::throttle::QuotaKind;

/// `acks`: answer once every in-sync replica has the records.
const ACKS_ALL: i16 = -1;
/// `acks`: answer nothing at all.
const ACKS_NONE: i16 = 0;
/// `acks`: answer once the leader has written the records.
const ACKS_LEADER: i16 = 1;

/// A partition's answer when its records were not appended.
fn partition_error(
    index: i32,
    e: ResponseError,
    message: Option<&str>,
) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code())
        .with_base_offset(-1)
        .with_error_message(message.map(|m| sb(m.to_string())))
}

/// Records appended under acks=all that the high watermark has yet to pass.
struct Uncommitted {
    /// Whose high watermark to wait on.
    partition: Arc<Partition>,
    /// The offset the high watermark must reach.
    offset: i64,
    /// The leader epoch the records were appended in.
    epoch: i32,
}

/// An acks=all append that must reach the high watermark before the answer.
struct Wait {
    /// Topic slot in the response.
    topic: usize,
    /// Partition slot in the topic's response.
    slot: usize,
    /// What the wait is for.
    records: Uncommitted,
}

/// The answers of a request's appends, and the acks=all appends still to be committed.
struct Appended {
    /// One per topic of the request, in its order, each partition in its order.
    responses: Vec<TopicProduceResponse>,
    /// The acks=all appends whose answers wait for the high watermark.
    waits: Vec<Wait>,
}

/// What every partition's answer depends on besides its own data: one per request.
struct Appends {
    /// The topics and partitions appended to.
    cluster: Arc<Cluster>,
    /// Counts the records and bytes appended.
    metrics: Arc<Metrics>,
    /// This node: only the partitions it leads take appends.
    node: i32,
    /// The request's `acks`: whether the answer waits for the ISR (or is refused).
    acks: i16,
    /// Partitions refused before any append (a transactional produce that failed its
    /// verification), with the error each answers.
    refused: HashMap<(String, i32), ResponseError>,
    /// The broker's effective `min.insync.replicas`, for topics that do not override it.
    default_min_isr: i32,
    /// Topics the principal may not WRITE: their partitions answer TOPIC_AUTHORIZATION_FAILED
    /// and nothing is appended to them.
    denied: HashSet<String>,
}

/// A produce whose appends are done: its answer, or the wait for the in-sync replicas that
/// makes it.
pub enum Produced {
    /// The answer (none for acks=0).
    Now(Option<ProduceResponse>),
    /// acks=all: the answer once the high watermark passed every append (or the request's
    /// timeout ran out). It borrows nothing from the request: a connection serves the requests
    /// behind this one while it waits.
    Later(BoxFuture<'static, ProduceResponse>),
}

/// Produce, appends and acks=all wait together.
pub async fn produce(ctx: &Ctx<'_>, req: ProduceRequest) -> Option<ProduceResponse> {
    match append(ctx, req).await {
        Produced::Now(answer) => answer,
        Produced::Later(answer) => Some(answer.await),
    }
}

/// Produce's appends (in request order: a connection runs one request's at a time); the answer,
/// or for acks=all the wait for the in-sync replicas that completes it.
pub async fn append(ctx: &Ctx<'_>, req: ProduceRequest) -> Produced {
    let acks = req.acks;
    let node = ctx.broker.node_id();
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let size: u64 = req
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .filter_map(|p| p.records.as_ref())
        .map(|r| r.len() as u64)
        .sum();
    let appends = Appends {
        cluster: Arc::clone(&ctx.broker.cluster),
        metrics: Arc::clone(&ctx.broker.metrics),
        node,
        acks,
        refused: verify_transaction(ctx, &req).await,
        default_min_isr: ctx.broker.cluster.effective_config().min_insync_replicas,
        denied: req
            .topic_data
            .iter()
            .map(|td| td.name.to_string())
            .filter(|name| !ctx.authorized(Operation::Write, Resource::topic(name)))
            .collect(),
    };
    let Appended {
        mut responses,
        waits,
    } = run_appends(req, move |req| appends.all(req)).await;
    count_failures(&ctx.broker.metrics, &ctx.broker.cluster, &responses);
    let throttle_ms = ctx.throttle(QuotaKind::Produce, size);
    if acks == ACKS_NONE {
        return Produced::Now(None);
    }
    let answer = move |responses| {
        ProduceResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle_ms)
    };
    if waits.is_empty() {
        return Produced::Now(Some(answer(responses)));
    }
    let metrics = Arc::clone(&ctx.broker.metrics);
    // Timed from the appends, not from the future's first poll, which a connection may make
    // only after serving the requests behind this one.
    let waited = Instant::now();
    let deadline = waited + timeout;
    Produced::Later(Box::pin(async move {
        await_commits(&mut responses, waits, node, deadline).await;
        metrics
            .acks_all_wait
            .observe(waited.elapsed().as_secs_f64());
        answer(responses)
    }))
}

/// Counts each partition refused by the append itself in its topic's failed produce
/// requests. As Kafka's FailedProduceRequestsPerSec, the refusals every client expects and
/// retries or gives up on by itself (leadership, unknown partitions, oversized or corrupt
/// batches, storage errors) and authorization are not failures of the broker's to count.
fn count_failures(metrics: &Metrics, cluster: &Cluster, responses: &[TopicProduceResponse]) {
    for t in responses {
        let failed = t
            .partition_responses
            .iter()
            .filter(|p| crate::metrics::topics::counts_as_failed(p.error_code))
            .count() as u64;
        // Only existing topics take a series: a request naming others must not fill the cap.
        if failed > 0 && cluster.topic(&t.name).is_some() {
            metrics
                .topics
                .of(&t.name)
                .failed_produce
                .fetch_add(failed, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// KIP-890 verification of a transactional produce, before anything is appended: each
/// partition this node leads where the producer has no transaction open yet must be in its
/// transaction at the coordinator, so a late or stray write cannot open a transaction nobody
/// will end. Returns the partitions refused and why: TRANSACTIONAL_ID_AUTHORIZATION_FAILED
/// without WRITE on the id; the coordinator's answer otherwise, its retriable errors as
/// NOT_ENOUGH_REPLICAS (which producers retry), as Kafka answers them.
async fn verify_transaction(
    ctx: &Ctx<'_>,
    req: &ProduceRequest,
) -> HashMap<(String, i32), ResponseError> {
    let mut refused = HashMap::new();
    let Some(id) = req.transactional_id.as_ref().filter(|id| !id.is_empty()) else {
        // Transactional records need a transactional id to be checked against, as in Kafka.
        for td in &req.topic_data {
            for pd in &td.partition_data {
                let transactional = pd
                    .records
                    .as_deref()
                    .and_then(crate::log::batch::BatchHeader::parse)
                    .is_some_and(|h| h.is_transactional());
                if transactional {
                    refused.insert(
                        (td.name.to_string(), pd.index),
                        ResponseError::TransactionalIdAuthorizationFailed,
                    );
                }
            }
        }
        return refused;
    };
    let node = ctx.broker.node_id();
    let denied = !ctx.authorized(Operation::Write, Resource::transactional_id(id));
    // Producer (id, epoch) → partitions to verify.
    let mut unverified: HashMap<(i64, i16), Vec<(String, i32)>> = HashMap::new();
    for td in &req.topic_data {
        for pd in &td.partition_data {
            let key = (td.name.to_string(), pd.index);
            if denied {
                refused.insert(key, ResponseError::TransactionalIdAuthorizationFailed);
                continue;
            }
            let Some(header) = pd
                .records
                .as_deref()
                .and_then(crate::log::batch::BatchHeader::parse)
                .filter(|h| h.is_transactional())
            else {
                continue;
            };
            let Some(p) = ctx.broker.cluster.partition(&key.0, key.1) else {
                continue;
            };
            let open = p.is_led_by(node)
                && p.log().is_some_and(|log| {
                    log.has_open_transaction(header.producer_id, header.producer_epoch)
                });
            if !open {
                unverified
                    .entry((header.producer_id, header.producer_epoch))
                    .or_default()
                    .push(key);
            }
        }
    }
    for ((producer_id, epoch), parts) in unverified {
        // Produce v12+ is transaction.version 2: the partition joins the transaction here,
        // the producer sends no AddPartitionsToTxn (KIP-890 part 2).
        let add = ctx.version >= 12;
        let answers = ctx
            .broker
            .txns
            .verify_or_add(id, (producer_id, epoch), &parts, add)
            .await;
        for (part, e) in parts.into_iter().zip(answers) {
            let e = match e {
                None => continue,
                Some(
                    ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::CoordinatorLoadInProgress
                    | ResponseError::ConcurrentTransactions,
                ) => ResponseError::NotEnoughReplicas,
                Some(ResponseError::ProducerFenced) => ResponseError::InvalidProducerEpoch,
                Some(e) => e,
            };
            refused.insert(part, e);
        }
    }
    refused
}

/// Runs `append`, the appends of `req`, on a blocking thread. Should it panic, every partition
/// of the request answers KAFKA_STORAGE_ERROR, which clients retry: a response that leaves
/// partitions out is a protocol violation to them.
async fn run_appends<F>(req: ProduceRequest, append: F) -> Appended
where
    F: FnOnce(&ProduceRequest) -> Appended + Send + 'static,
{
    // Shared with the blocking task only so that a panic there still leaves the request to
    // answer; it is dropped, records and all, before any acks=all wait.
    let req = Arc::new(req);
    let shared = Arc::clone(&req);
    if let Some(appended) = blocking(move || append(&shared)).await {
        return appended;
    }
    tracing::error!(
        topics = req.topic_data.len(),
        "the produce appends failed (their task panicked or was cancelled); every partition \
         answers KAFKA_STORAGE_ERROR"
    );
    let responses = req
        .topic_data
        .iter()
        .map(|td| {
            let parts = td.partition_data.iter().map(|pd| {
                partition_error(
                    pd.index,
                    ResponseError::KafkaStorageError,
                    Some("the broker failed while appending the records"),
                )
            });
            TopicProduceResponse::default()
                .with_name(td.name.clone())
                .with_partition_responses(parts.collect())
        })
        .collect();
    Appended {
        responses,
        waits: Vec::new(),
    }
}

impl Appends {
    /// Appends every partition of `req` (blocking), answering each in request order.
    fn all(&self, req: &ProduceRequest) -> Appended {
        let mut responses = Vec::with_capacity(req.topic_data.len());
        let mut waits = Vec::new();
        for td in &req.topic_data {
            let topic = self.cluster.topic(&td.name);
            let denied = self.denied.contains(td.name.as_str());
            let mut parts = Vec::with_capacity(td.partition_data.len());
            for pd in &td.partition_data {
                let (response, uncommitted) = if denied {
                    let e = ResponseError::TopicAuthorizationFailed;
                    (partition_error(pd.index, e, None), None)
                } else {
                    self.partition(topic.as_deref(), pd)
                };
                if let Some(records) = uncommitted {
                    waits.push(Wait {
                        topic: responses.len(),
                        slot: parts.len(),
                        records,
                    });
                }
                parts.push(response);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(td.name.clone())
                    .with_partition_responses(parts),
            );
        }
        Appended { responses, waits }
    }

    /// One partition's answer, and, for acks=all, the records the answer waits on.
    fn partition(
        &self,
        topic: Option<&Topic>,
        pd: &PartitionProduceData,
    ) -> (PartitionProduceResponse, Option<Uncommitted>) {
        let refuse = |e, message| (partition_error(pd.index, e, message), None);
        if !matches!(self.acks, ACKS_ALL..=ACKS_LEADER) {
            return refuse(ResponseError::InvalidRequiredAcks, None);
        }
        let Some(topic) = topic else {
            return refuse(ResponseError::UnknownTopicOrPartition, None);
        };
        if topic.is_internal() {
            return refuse(ResponseError::InvalidTopicException, None);
        }
        let Some(p) = topic.partition(pd.index) else {
            return refuse(ResponseError::UnknownTopicOrPartition, None);
        };
        if !p.is_led_by(self.node) {
            return refuse(ResponseError::NotLeaderOrFollower, None);
        }
        if self.acks == ACKS_ALL
            && !p.enough_replicas(topic.min_insync_replicas(self.default_min_isr))
        {
            return refuse(
                ResponseError::NotEnoughReplicas,
                Some("the in-sync replicas are fewer than min.insync.replicas"),
            );
        }
        let Some(records) = pd.records.clone() else {
            return refuse(ResponseError::CorruptMessage, None);
        };
        if let Some(&e) = self.refused.get(&(topic.name.clone(), pd.index)) {
            return refuse(
                e,
                Some("the partition is not in the producer's transaction"),
            );
        }
        self.append(p, records)
    }

    /// Appends `records` to `p`, which this node leads (blocking).
    fn append(
        &self,
        p: Arc<Partition>,
        records: Bytes,
    ) -> (PartitionProduceResponse, Option<Uncommitted>) {
        let bytes = records.len() as u64;
        let (info, epoch) = match self.cluster.append(&p, records) {
            Ok((AppendOutcome::Appended(info), epoch)) => {
                let messages = (info.last_offset - info.base_offset + 1).max(0) as u64;
                self.metrics.messages_in.inc_by(messages);
                self.metrics.produce_bytes.inc_by(bytes);
                self.metrics.topics.of(&p.topic).produced(bytes, messages);
                (info, epoch)
            }
            Ok((AppendOutcome::Duplicate(info), epoch)) => (info, epoch),
            Err(e) => {
                tracing::debug!(topic = %p.topic, partition = p.index, error = %e, "append refused");
                let message = e.to_string();
                let response = partition_error(p.index, log_error_code(&e), Some(&message));
                return (response, None);
            }
        };
        let response = PartitionProduceResponse::default()
            .with_index(p.index)
            .with_base_offset(info.base_offset)
            .with_log_append_time_ms(info.log_append_time)
            .with_log_start_offset(info.log_start_offset);
        let uncommitted = (self.acks == ACKS_ALL).then(|| Uncommitted {
            partition: p,
            offset: info.last_offset + 1,
            epoch,
        });
        (response, uncommitted)
    }
}

/// acks=all: waits until every in-sync replica has each append's records (the high watermark
/// passed them; on one node that is at once), under one deadline for the whole request as
/// Kafka's request timeout, and turns the appends that were not committed into errors.
async fn await_commits(
    responses: &mut [TopicProduceResponse],
    waits: Vec<Wait>,
    node: i32,
    deadline: Instant,
) {
    for Wait {
        topic,
        slot,
        records,
    } in waits
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let (code, message) = match records
            .partition
            .wait_for_high_watermark(records.offset, node, records.epoch, left)
            .await
        {
            Commit::Committed => continue,
            Commit::TimedOut => (
                ResponseError::RequestTimedOut,
                "the in-sync replicas did not acknowledge the records in time",
            ),
            Commit::NotLeader => (
                ResponseError::NotLeaderOrFollower,
                "the partition leadership moved before the records were committed",
            ),
        };
        if let Some(r) = responses
            .get_mut(topic)
            .and_then(|t| t.partition_responses.get_mut(slot))
        {
            r.error_code = code.code();
            r.error_message = Some(sb(message));
        }
    }
}

/// InitProducerId: a fresh producer id for idempotent producers (transactions are refused).
/// As in Kafka, an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some
/// topic.
pub async fn init_producer_id(
    ctx: &Ctx<'_>,
    req: InitProducerIdRequest,
) -> Option<InitProducerIdResponse> {
    let refuse = |e: ResponseError| {
        Some(
            InitProducerIdResponse::default()
                .with_error_code(e.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
    };
    if let Some(id) = req.transactional_id.as_ref().filter(|id| !id.is_empty()) {
        return Some(super::transactions::init_transactional_producer(ctx, &req, id).await);
    }
    if !ctx.authorized(Operation::IdempotentWrite, Resource::cluster())
        && !ctx.authorized_any(Operation::Write, ResourceType::Topic)
    {
        return refuse(ResponseError::ClusterAuthorizationFailed);
    }
    let cluster: Arc<Cluster> = Arc::clone(&ctx.broker.cluster);
    match blocking(move || cluster.allocate_producer_id()).await {
        Some(Ok(id)) => Some(
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
        ),
        _ => Some(
            InitProducerIdResponse::default()
                .with_error_code(ResponseError::CoordinatorNotAvailable.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_request::TopicProduceData;
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn topic(name: &'static str, partitions: &[i32]) -> TopicProduceData {
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_partition_data(
                partitions
                    .iter()
                    .map(|i| PartitionProduceData::default().with_index(*i))
                    .collect(),
            )
    }

    #[tokio::test]
    async fn a_panicked_append_answers_storage_error_for_every_partition_of_the_request() {
        let req = ProduceRequest::default()
            .with_acks(ACKS_LEADER)
            .with_topic_data(vec![topic("a", &[0, 2]), topic("b", &[1])]);
        let Appended { responses, waits } =
            run_appends(req, |_| panic!("the append thread died")).await;
        assert!(waits.is_empty());
        let answered: Vec<(&str, Vec<(i32, i16)>)> = responses
            .iter()
            .map(|t| {
                let parts = t.partition_responses.iter();
                (&*t.name.0, parts.map(|p| (p.index, p.error_code)).collect())
            })
            .collect();
        let storage = ResponseError::KafkaStorageError.code();
        assert_eq!(
            answered,
            [
                ("a", vec![(0, storage), (2, storage)]),
                ("b", vec![(1, storage)])
            ]
        );
    }
}
