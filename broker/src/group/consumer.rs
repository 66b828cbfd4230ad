//! The consumer group protocol (KIP-848): members heartbeat, the coordinator assigns.
//!
//! A group has an epoch, bumped whenever what the assignment depends on changes (a member
//! joins or leaves, a subscription changes, a subscribed topic gains partitions). A new epoch
//! computes a new target assignment with the group's assignor (`uniform`, sticky and
//! balanced, or `range`). Each member then reconciles towards its target on its own
//! heartbeats, incrementally: it first gives up the partitions it must lose (and keeps the
//! rest), and only once it has acknowledged that by reporting what it owns does it move to the
//! new epoch and receive partitions, each only once its previous owner has released it. No
//! member ever stops consuming the partitions it keeps.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;

/// A topic partition by name.
pub type TopicPartition = (String, i32);

/// The assignors a group can use (`group.consumer.assignors`); the first is the default.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// A member of a consumer-protocol group.
#[derive(Debug, Clone)]
pub struct ConsumerMember {
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Rack.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Topics subscribed by name.
    pub subscribed: BTreeSet<String>,
    /// Topics subscribed by pattern (RE2J syntax).
    pub regex: Option<String>,
    /// The assignor the member asked for, if any.
    pub assignor: Option<String>,
    /// How long it has to give up partitions.
    pub rebalance_timeout: Duration,
    /// Its epoch (the group epoch whose target it last reached).
    pub epoch: i32,
    /// Its epoch before that, which its in-flight requests may still carry.
    pub previous_epoch: i32,
    /// Partitions it owns.
    pub assigned: BTreeSet<TopicPartition>,
    /// Partitions it was told to give up and has not yet acknowledged.
    pub revoking: BTreeSet<TopicPartition>,
    /// The assignment last sent, to send it again only when it changes.
    pub sent: Option<BTreeSet<TopicPartition>>,
    /// Last heartbeat.
    pub last_heartbeat: Instant,
    /// When partitions must have been given up by.
    pub revoke_deadline: Option<Instant>,
    /// Set for a member that speaks the classic protocol (JoinGroup, SyncGroup, Heartbeat) in
    /// this consumer-protocol group: Kafka 4.x's mixed groups.
    pub classic: Option<ClassicMember>,
}

impl ConsumerMember {
    /// A member that has not heartbeated yet: epoch 0, nothing subscribed or owned, last
    /// heard of at `now`.
    pub fn new(now: Instant) -> ConsumerMember {
        ConsumerMember {
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed: BTreeSet::new(),
            regex: None,
            assignor: None,
            rebalance_timeout: Duration::from_secs(300),
            epoch: 0,
            previous_epoch: -1,
            assigned: BTreeSet::new(),
            revoking: BTreeSet::new(),
            sent: None,
            last_heartbeat: now,
            revoke_deadline: None,
            classic: None,
        }
    }
}

/// What a classic-protocol member of a consumer-protocol group has besides: the timeout and
/// protocols of its last JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMember {
    /// Its session timeout (a consumer-protocol member has the group's).
    pub session_timeout: Duration,
    /// Its protocols (assignor names) with their embedded subscriptions, in its order.
    pub protocols: Vec<(String, Bytes)>,
}

/// A classic member's JoinGroup, its embedded subscription decoded: the join (epoch 0) a
/// consumer-protocol member would send, with the subscription and the partitions it owns
/// (empty for an eager assignor: it gave up everything first), and its classic part.
#[derive(Debug, Clone)]
pub struct ClassicJoin {
    /// The join; its member id is never empty (the coordinator hands one out first).
    pub heartbeat: Heartbeat,
    /// Its session timeout and protocols.
    pub classic: ClassicMember,
}

/// One consumer-protocol group's membership and assignment.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroup {
    /// Group epoch.
    pub epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// Members by id.
    pub members: BTreeMap<String, ConsumerMember>,
    /// Each member's target partitions.
    pub target: BTreeMap<String, BTreeSet<TopicPartition>>,
    /// Partition counts of the subscribed topics when the target was computed.
    pub topics_seen: BTreeMap<String, i32>,
    /// The assignor in use.
    pub assignor: String,
}

/// A heartbeat, protocol-neutral.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// Member id (client-generated since v1; empty on a v0 join).
    pub member_id: String,
    /// 0 joins, -1 leaves, -2 leaves as a static member, else the member's epoch.
    pub member_epoch: i32,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Rack.
    pub rack_id: Option<String>,
    /// Rebalance timeout (-1: unchanged).
    pub rebalance_timeout_ms: i32,
    /// Subscribed topic names (`None`: unchanged).
    pub subscribed: Option<BTreeSet<String>>,
    /// Subscribed pattern (`None`: unchanged).
    pub regex: Option<String>,
    /// Requested assignor (`None`: unchanged).
    pub assignor: Option<String>,
    /// The partitions the member owns (`None`: unchanged since its last heartbeat).
    pub owned: Option<BTreeSet<TopicPartition>>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
}

/// A heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    /// The member's id.
    pub member_id: String,
    /// Its epoch (-1 after leaving).
    pub member_epoch: i32,
    /// Its assignment, when it changed.
    pub assignment: Option<BTreeSet<TopicPartition>>,
}

/// A refused heartbeat: Kafka's error and what to tell the client.
pub type Refusal = (ResponseError, String);

impl ConsumerGroup {
    /// An empty group using `assignor`.
    pub fn new(assignor: &str) -> ConsumerGroup {
        ConsumerGroup {
            assignor: assignor.to_string(),
            ..ConsumerGroup::default()
        }
    }

    /// A classic group taken over by the consumer protocol (Kafka's online upgrade, when a
    /// consumer-protocol member joins it): each member keeps what it was assigned, at the
    /// classic generation as group and member epoch, and goes on speaking the classic protocol.
    /// `members` carry their assignments as what they own.
    pub fn from_classic(
        generation: i32,
        members: Vec<ClassicJoin>,
        topics: &BTreeMap<String, i32>,
        now: Instant,
    ) -> ConsumerGroup {
        let mut g = ConsumerGroup::new(ASSIGNORS[0]);
        g.epoch = generation;
        g.assignment_epoch = generation;
        for ClassicJoin {
            heartbeat: j,
            classic,
        } in members
        {
            let owned = j.owned.unwrap_or_default();
            g.target.insert(j.member_id.clone(), owned.clone());
            let member = ConsumerMember {
                instance_id: j.instance_id,
                rack_id: j.rack_id,
                client_id: j.client_id,
                client_host: j.client_host,
                subscribed: j.subscribed.unwrap_or_default(),
                regex: None,
                assignor: None,
                rebalance_timeout: Duration::from_millis(j.rebalance_timeout_ms.max(0) as u64),
                epoch: generation,
                previous_epoch: -1,
                sent: Some(owned.clone()),
                assigned: owned,
                revoking: BTreeSet::new(),
                last_heartbeat: now,
                revoke_deadline: None,
                classic: Some(classic),
            };
            g.members.insert(j.member_id, member);
        }
        g.topics_seen = g
            .subscriptions(topics)
            .into_values()
            .flatten()
            .filter_map(|t| topics.get(&t).map(|&n| (t, n)))
            .collect();
        g
    }

    /// The group's state as Kafka names it: Empty, Assigning (the target is not computed
    /// for the current epoch), Reconciling (some member is not at it yet), Stable.
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || !m.revoking.is_empty())
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Handles a heartbeat. `topics` are the cluster's topics and partition counts;
    /// `new_member_id` names a v0 member joining without an id.
    pub fn heartbeat(
        &mut self,
        req: Heartbeat,
        topics: &BTreeMap<String, i32>,
        now: Instant,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<HeartbeatAnswer, Refusal> {
        let id = match req.member_epoch {
            0 => self.join(&req, now, new_member_id)?,
            -1 | -2 => {
                self.leave(&req.member_id);
                return Ok(HeartbeatAnswer {
                    member_id: req.member_id,
                    member_epoch: req.member_epoch,
                    assignment: None,
                });
            }
            epoch => {
                let Some(m) = self.members.get(&req.member_id) else {
                    return Err((
                        ResponseError::UnknownMemberId,
                        format!("member {} is not in the group", req.member_id),
                    ));
                };
                let previous_ok = epoch == m.previous_epoch
                    && req
                        .owned
                        .as_ref()
                        .is_some_and(|owned| owned.is_subset(&m.assigned));
                if epoch != m.epoch && !previous_ok {
                    return Err((
                        ResponseError::FencedMemberEpoch,
                        format!(
                            "member {} sent epoch {epoch}; its epoch is {}",
                            req.member_id, m.epoch
                        ),
                    ));
                }
                req.member_id.clone()
            }
        };
        let assignment = self.advance(&id, &req, topics, now);
        let epoch = self.members.get(&id).map_or(-1, |m| m.epoch);
        Ok(HeartbeatAnswer {
            member_id: id,
            member_epoch: epoch,
            assignment,
        })
    }

    /// Applies a member's request, recomputes the target when the epoch moved, and moves the
    /// member towards it; returns its assignment when that changed.
    fn advance(
        &mut self,
        id: &str,
        req: &Heartbeat,
        topics: &BTreeMap<String, i32>,
        now: Instant,
    ) -> Option<BTreeSet<TopicPartition>> {
        self.update_member(id, req, now);
        if self.topics_changed(topics) {
            self.epoch += 1;
        }
        if self.assignment_epoch < self.epoch {
            self.compute_target(topics);
        }
        self.reconcile(id, req.owned.as_ref(), now)
    }

    /// A classic member's JoinGroup: it joins (or, known, updates its subscription) and moves
    /// towards its target as a consumer-protocol member would, what it owns standing for what
    /// it reports. Answers its epoch, which is its generation: Kafka's JoinGroup answer in a
    /// consumer-protocol group, given at once, the member never its leader.
    pub fn classic_join(
        &mut self,
        req: ClassicJoin,
        topics: &BTreeMap<String, i32>,
        now: Instant,
    ) -> Result<i32, Refusal> {
        let ClassicJoin {
            heartbeat: hb,
            classic,
        } = req;
        let id = hb.member_id.clone();
        if !self.members.contains_key(&id) {
            self.join(&hb, now, || id.clone())?;
        }
        if let Some(m) = self.members.get_mut(&id) {
            m.classic = Some(classic);
        }
        self.advance(&id, &hb, topics, now);
        Ok(self.members.get(&id).map_or(-1, |m| m.epoch))
    }

    /// The classic member `member_id` at `generation`, if it may sync or heartbeat: a
    /// consumer-protocol member or none is UNKNOWN_MEMBER_ID, another generation
    /// ILLEGAL_GENERATION.
    fn classic_member(
        &mut self,
        member_id: &str,
        generation: i32,
    ) -> Result<&mut ConsumerMember, ResponseError> {
        let m = self
            .members
            .get_mut(member_id)
            .filter(|m| m.classic.is_some())
            .ok_or(ResponseError::UnknownMemberId)?;
        if m.epoch != generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(m)
    }

    /// A classic member's SyncGroup: its current assignment, or REBALANCE_IN_PROGRESS when
    /// the group moved on since its join and it has nothing to give up first.
    pub fn classic_sync(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Result<BTreeSet<TopicPartition>, ResponseError> {
        let epoch = self.epoch;
        let m = self.classic_member(member_id, generation)?;
        m.last_heartbeat = now;
        if epoch > m.epoch && m.revoking.is_empty() {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(m.assigned.clone())
    }

    /// A classic member's Heartbeat: REBALANCE_IN_PROGRESS (rejoin) when the group moved on,
    /// when it must give partitions up, or when partitions it waits for were released.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        generation: i32,
        now: Instant,
    ) -> Option<ResponseError> {
        let epoch = self.epoch;
        let pending: BTreeSet<TopicPartition> = self
            .target
            .get(member_id)
            .map(|t| {
                t.iter()
                    .filter(|tp| !self.held_by_others(member_id).contains(*tp))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let m = match self.classic_member(member_id, generation) {
            Ok(m) => m,
            Err(e) => return Some(e),
        };
        m.last_heartbeat = now;
        let rejoin = m.epoch < epoch || !m.revoking.is_empty() || !pending.is_subset(&m.assigned);
        rejoin.then_some(ResponseError::RebalanceInProgress)
    }

    /// Whether every member speaks the classic protocol (and there is one).
    pub fn all_classic(&self) -> bool {
        !self.members.is_empty() && self.members.values().all(|m| m.classic.is_some())
    }

    /// The partitions members other than `id` own or are still giving up.
    fn held_by_others(&self, id: &str) -> BTreeSet<TopicPartition> {
        self.members
            .iter()
            .filter(|(other, _)| other.as_str() != id)
            .flat_map(|(_, m)| m.assigned.iter().chain(&m.revoking).cloned())
            .collect()
    }

    /// A member joining (epoch 0): new, a static member's new incarnation taking over its
    /// place, or a member rejoining after being fenced.
    fn join(
        &mut self,
        req: &Heartbeat,
        now: Instant,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<String, Refusal> {
        if req.subscribed.is_none() && req.regex.is_none() {
            return Err((
                ResponseError::InvalidRequest,
                "a joining member must give SubscribedTopicNames or SubscribedTopicRegex".into(),
            ));
        }
        let id = if req.member_id.is_empty() {
            new_member_id()
        } else {
            req.member_id.clone()
        };
        let replaced = req.instance_id.as_ref().and_then(|instance| {
            self.members
                .iter()
                .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                .map(|(old, _)| old.clone())
        });
        let carried = match replaced {
            // A static member's restart keeps its assignment and epoch (KIP-345's promise,
            // kept by KIP-848).
            Some(old) if old != id => {
                let m = self.members.remove(&old);
                if let Some(t) = self.target.remove(&old) {
                    self.target.insert(id.clone(), t);
                }
                m
            }
            _ => None,
        };
        let member = match carried {
            Some(m) => m,
            None => {
                if self.members.remove(&id).is_some() {
                    // Rejoining under the same id: it starts over, the group moves on.
                    self.target.remove(&id);
                    self.epoch += 1;
                }
                // A new member's subscription (applied next) moves the group's epoch on, once.
                ConsumerMember {
                    instance_id: req.instance_id.clone(),
                    ..ConsumerMember::new(now)
                }
            }
        };
        self.members.insert(id.clone(), member);
        Ok(id)
    }

    /// Removes a member; the group's epoch moves on.
    pub fn leave(&mut self, member_id: &str) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.epoch += 1;
        }
    }

    /// Applies what the heartbeat says about the member.
    fn update_member(&mut self, id: &str, req: &Heartbeat, now: Instant) {
        let mut changed = false;
        if let Some(m) = self.members.get_mut(id) {
            m.last_heartbeat = now;
            m.client_id.clone_from(&req.client_id);
            m.client_host.clone_from(&req.client_host);
            if req.rack_id.is_some() {
                m.rack_id.clone_from(&req.rack_id);
            }
            if req.rebalance_timeout_ms > 0 {
                m.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms as u64);
            }
            if let Some(s) = &req.subscribed {
                changed |= *s != m.subscribed;
                m.subscribed.clone_from(s);
            }
            if let Some(r) = &req.regex {
                let r = Some(r.clone()).filter(|r| !r.is_empty());
                changed |= r != m.regex;
                m.regex = r;
            }
            if let Some(a) = &req.assignor {
                m.assignor = Some(a.clone()).filter(|a| !a.is_empty());
            }
        }
        if let Some(a) = self.members.get(id).and_then(|m| m.assignor.clone()) {
            if a != self.assignor {
                self.assignor = a;
                changed = true;
            }
        }
        if changed {
            self.epoch += 1;
        }
    }

    /// The topics each member subscribes to, by name or by pattern, among `topics`.
    fn subscriptions(&self, topics: &BTreeMap<String, i32>) -> BTreeMap<String, BTreeSet<String>> {
        self.members
            .iter()
            .map(|(id, m)| {
                let pattern = m
                    .regex
                    .as_deref()
                    .and_then(|r| regex::Regex::new(&format!("^(?:{r})$")).ok());
                let subscribed = topics
                    .keys()
                    .filter(|t| {
                        m.subscribed.contains(*t) || pattern.as_ref().is_some_and(|p| p.is_match(t))
                    })
                    .cloned()
                    .collect();
                (id.clone(), subscribed)
            })
            .collect()
    }

    /// Whether a subscribed topic appeared, went, or changed its partition count since the
    /// target was computed.
    fn topics_changed(&self, topics: &BTreeMap<String, i32>) -> bool {
        let now: BTreeMap<String, i32> = self
            .subscriptions(topics)
            .into_values()
            .flatten()
            .filter_map(|t| topics.get(&t).map(|&n| (t, n)))
            .collect();
        now != self.topics_seen
    }

    /// Computes the target assignment for the current epoch.
    fn compute_target(&mut self, topics: &BTreeMap<String, i32>) {
        let subscriptions = self.subscriptions(topics);
        self.topics_seen = subscriptions
            .values()
            .flatten()
            .filter_map(|t| topics.get(t).map(|&n| (t.clone(), n)))
            .collect();
        self.target = if self.assignor == "range" {
            assign_range(&subscriptions, topics)
        } else {
            assign_uniform(&subscriptions, topics, &self.target)
        };
        self.assignment_epoch = self.epoch;
    }

    /// Moves a member towards its target: it first gives up what it must lose; once it has
    /// (its owned partitions no longer include them) it takes the new epoch and every target
    /// partition no other member still holds. Returns its assignment when that changed.
    fn reconcile(
        &mut self,
        id: &str,
        owned: Option<&BTreeSet<TopicPartition>>,
        now: Instant,
    ) -> Option<BTreeSet<TopicPartition>> {
        let target = self.target.get(id).cloned().unwrap_or_default();
        let held_by_others = self.held_by_others(id);
        let assignment_epoch = self.assignment_epoch;
        let m = self.members.get_mut(id)?;
        if let Some(owned) = owned {
            if owned.is_disjoint(&m.revoking) {
                m.revoking.clear();
                m.revoke_deadline = None;
            }
        }
        if m.revoking.is_empty() {
            let mut lose: BTreeSet<TopicPartition> =
                m.assigned.difference(&target).cloned().collect();
            if m.classic.is_some() && owned.is_some_and(|o| o.is_disjoint(&lose)) {
                // A classic member that no longer owns them (an eager assignor gives up
                // everything before it joins) has nothing to give up first.
                m.assigned.retain(|p| !lose.contains(p));
                lose.clear();
            }
            if lose.is_empty() {
                if m.epoch != assignment_epoch {
                    m.previous_epoch = m.epoch;
                    m.epoch = assignment_epoch;
                }
                let free = target
                    .difference(&m.assigned)
                    .filter(|p| !held_by_others.contains(*p))
                    .cloned()
                    .collect::<Vec<_>>();
                m.assigned.extend(free);
            } else {
                m.assigned.retain(|p| !lose.contains(p));
                m.revoking = lose;
                m.revoke_deadline = Some(now + m.rebalance_timeout);
            }
        }
        if m.sent.as_ref() == Some(&m.assigned) && owned.is_none_or(|o| *o == m.assigned) {
            return None;
        }
        m.sent = Some(m.assigned.clone());
        Some(m.assigned.clone())
    }

    /// Removes members whose session expired or that did not give up partitions within their
    /// rebalance timeout; returns their ids.
    pub fn expire(&mut self, now: Instant, session_timeout: Duration) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                let session = m
                    .classic
                    .as_ref()
                    .map_or(session_timeout, |c| c.session_timeout);
                now.duration_since(m.last_heartbeat) > session
                    || m.revoke_deadline.is_some_and(|d| now > d)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.leave(id);
        }
        gone
    }

    /// Checks a commit or offset fetch by a member at `epoch`: UNKNOWN_MEMBER_ID or
    /// STALE_MEMBER_EPOCH, as Kafka answers.
    pub fn validate(&self, member_id: &str, epoch: i32) -> Option<ResponseError> {
        let Some(m) = self.members.get(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        (epoch != m.epoch && epoch != m.previous_epoch).then_some(ResponseError::StaleMemberEpoch)
    }
}

/// The uniform assignor: every subscribed partition to exactly one member subscribed to its
/// topic, counts as even as the subscriptions allow, and sticky — a partition stays with its
/// member in the previous target unless balance needs it elsewhere.
fn assign_uniform(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, i32>,
    previous: &BTreeMap<String, BTreeSet<TopicPartition>>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out: BTreeMap<String, BTreeSet<TopicPartition>> = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let eligible = |m: &str, (t, p): &TopicPartition| {
        subscriptions.get(m).is_some_and(|s| s.contains(t))
            && topics.get(t).is_some_and(|&n| *p < n)
    };
    // Sticky: what each member had, while still valid.
    let mut taken = BTreeSet::new();
    for (m, parts) in previous {
        for tp in parts {
            if eligible(m, tp) && taken.insert(tp.clone()) {
                if let Some(set) = out.get_mut(m) {
                    set.insert(tp.clone());
                }
            }
        }
    }
    // The rest to the least loaded eligible member.
    let all: Vec<TopicPartition> = subscriptions
        .values()
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .flat_map(|t| (0..topics.get(t).copied().unwrap_or(0)).map(move |p| (t.clone(), p)))
        .collect();
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let best = out
            .iter()
            .filter(|(m, _)| eligible(m, tp))
            .min_by_key(|(m, set)| (set.len(), (*m).clone()))
            .map(|(m, _)| m.clone());
        if let Some(m) = best {
            if let Some(set) = out.get_mut(&m) {
                set.insert(tp.clone());
            }
        }
    }
    // Balance: move partitions from the most to the least loaded while that narrows the gap.
    loop {
        let mut moved = false;
        let members: Vec<String> = out.keys().cloned().collect();
        for from in &members {
            for to in &members {
                let (nf, nt) = (out[from].len(), out[to].len());
                if nf <= nt + 1 {
                    continue;
                }
                let candidate = out[from].iter().rev().find(|tp| eligible(to, tp)).cloned();
                if let Some(tp) = candidate {
                    if let Some(set) = out.get_mut(from) {
                        set.remove(&tp);
                    }
                    if let Some(set) = out.get_mut(to) {
                        set.insert(tp);
                    }
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    out
}

/// The range assignor: per topic, its partitions split in contiguous ranges over the members
/// subscribed to it, in member id order, the first ones taking one more when uneven.
fn assign_range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &BTreeMap<String, i32>,
) -> BTreeMap<String, BTreeSet<TopicPartition>> {
    let mut out: BTreeMap<String, BTreeSet<TopicPartition>> = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let all_topics: BTreeSet<&String> = subscriptions.values().flatten().collect();
    for t in all_topics {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| s.contains(t))
            .map(|(m, _)| m)
            .collect();
        let n = topics.get(t).copied().unwrap_or(0);
        let count = members.len() as i32;
        if count == 0 {
            continue;
        }
        let (per, extra) = (n / count, n % count);
        let mut next = 0;
        for (i, m) in members.iter().enumerate() {
            let take = per + i32::from((i as i32) < extra);
            if let Some(set) = out.get_mut(*m) {
                set.extend((next..next + take).map(|p| (t.clone(), p)));
            }
            next += take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> BTreeMap<String, i32> {
        BTreeMap::from([("a".to_string(), 6), ("b".to_string(), 2)])
    }

    fn join(id: &str, subscribed: &[&str]) -> Heartbeat {
        Heartbeat {
            member_id: id.to_string(),
            member_epoch: 0,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 60_000,
            subscribed: Some(subscribed.iter().map(|s| s.to_string()).collect()),
            regex: None,
            assignor: None,
            owned: Some(BTreeSet::new()),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn beat(id: &str, epoch: i32, owned: &BTreeSet<TopicPartition>) -> Heartbeat {
        Heartbeat {
            member_epoch: epoch,
            subscribed: None,
            owned: Some(owned.clone()),
            ..join(id, &[])
        }
    }

    /// Heartbeats every member (reporting what it was last given) until nothing changes.
    fn settle(
        g: &mut ConsumerGroup,
        owned: &mut BTreeMap<String, (i32, BTreeSet<TopicPartition>)>,
    ) {
        let now = Instant::now();
        for _ in 0..10 {
            let mut changed = false;
            for id in owned.keys().cloned().collect::<Vec<_>>() {
                let (epoch, parts) = owned[&id].clone();
                let a = g
                    .heartbeat(beat(&id, epoch, &parts), &topics(), now, || unreachable!())
                    .expect("heartbeat");
                if let Some(new) = a.assignment {
                    changed |= new != parts;
                    owned.insert(id.clone(), (a.member_epoch, new));
                } else if a.member_epoch != epoch {
                    changed = true;
                    owned.get_mut(&id).expect("member").0 = a.member_epoch;
                }
            }
            if !changed {
                return;
            }
        }
        panic!("the group did not settle: {g:?}");
    }

    fn count(owned: &BTreeMap<String, (i32, BTreeSet<TopicPartition>)>) -> Vec<usize> {
        owned.values().map(|(_, p)| p.len()).collect()
    }

    #[test]
    fn three_members_get_two_partitions_each_without_overlap() {
        let mut g = ConsumerGroup::new("uniform");
        let mut owned = BTreeMap::new();
        let topics = BTreeMap::from([("a".to_string(), 6)]);
        for id in ["m1", "m2", "m3"] {
            let a = g
                .heartbeat(join(id, &["a"]), &topics, Instant::now(), || unreachable!())
                .expect("join");
            owned.insert(
                id.to_string(),
                (a.member_epoch, a.assignment.unwrap_or_default()),
            );
        }
        settle(&mut g, &mut owned);
        assert_eq!(count(&owned), [2, 2, 2]);
        let all: BTreeSet<_> = owned.values().flat_map(|(_, p)| p.clone()).collect();
        assert_eq!(all.len(), 6);
        assert_eq!(g.state(), "Stable");
        assert!(owned.values().all(|(e, _)| *e == g.epoch));
    }

    #[test]
    fn a_leaving_member_moves_only_its_own_partitions() {
        let mut g = ConsumerGroup::new("uniform");
        let mut owned = BTreeMap::new();
        for id in ["m1", "m2", "m3"] {
            let a = g
                .heartbeat(
                    join(id, &["a"]),
                    &topics(),
                    Instant::now(),
                    || unreachable!(),
                )
                .expect("join");
            owned.insert(
                id.to_string(),
                (a.member_epoch, a.assignment.unwrap_or_default()),
            );
        }
        settle(&mut g, &mut owned);
        let before = owned.clone();
        g.heartbeat(
            beat("m2", owned["m2"].0, &owned["m2"].1),
            &topics(),
            Instant::now(),
            || unreachable!(),
        )
        .expect("beat");
        g.heartbeat(
            Heartbeat {
                member_epoch: -1,
                ..beat("m2", 0, &BTreeSet::new())
            },
            &topics(),
            Instant::now(),
            || unreachable!(),
        )
        .expect("leave");
        owned.remove("m2");
        settle(&mut g, &mut owned);
        assert_eq!(count(&owned), [3, 3]);
        for id in ["m1", "m3"] {
            assert!(
                before[id].1.is_subset(&owned[id].1),
                "{id} lost a partition it kept"
            );
        }
    }

    #[test]
    fn a_partition_moves_only_after_its_owner_gives_it_up() {
        let mut g = ConsumerGroup::new("uniform");
        let t = BTreeMap::from([("a".to_string(), 2)]);
        let now = Instant::now();
        let a1 = g
            .heartbeat(join("m1", &["a"]), &t, now, || unreachable!())
            .expect("m1");
        let m1_parts = a1.assignment.expect("assignment");
        assert_eq!(m1_parts.len(), 2);
        // m2 joins: m1 must give one up, m2 gets nothing until it has.
        let a2 = g
            .heartbeat(join("m2", &["a"]), &t, now, || unreachable!())
            .expect("m2");
        assert!(a2.assignment.unwrap_or_default().is_empty());
        let r1 = g
            .heartbeat(
                beat("m1", a1.member_epoch, &m1_parts),
                &t,
                now,
                || unreachable!(),
            )
            .expect("m1 beat");
        let kept = r1.assignment.expect("shrunk");
        assert_eq!(kept.len(), 1);
        assert_eq!(
            r1.member_epoch, a1.member_epoch,
            "not at the new epoch before revoking"
        );
        let r2 = g
            .heartbeat(
                beat("m2", a2.member_epoch, &BTreeSet::new()),
                &t,
                now,
                || unreachable!(),
            )
            .expect("m2 beat");
        assert!(
            r2.assignment.unwrap_or_default().is_empty(),
            "still held by m1"
        );
        let r1 = g
            .heartbeat(
                beat("m1", a1.member_epoch, &kept),
                &t,
                now,
                || unreachable!(),
            )
            .expect("m1 acks");
        assert_eq!(r1.member_epoch, g.epoch);
        let r2 = g
            .heartbeat(
                beat("m2", r2.member_epoch, &BTreeSet::new()),
                &t,
                now,
                || unreachable!(),
            )
            .expect("m2 beat");
        let got = r2.assignment.expect("released partition");
        assert!(got.is_disjoint(&kept) && got.len() == 1);
    }

    #[test]
    fn a_wrong_epoch_is_fenced_and_an_unknown_member_refused() {
        let mut g = ConsumerGroup::new("uniform");
        let now = Instant::now();
        let a = g
            .heartbeat(join("m1", &["a"]), &topics(), now, || unreachable!())
            .expect("m1");
        let e = g
            .heartbeat(
                beat("m1", a.member_epoch + 5, &BTreeSet::new()),
                &topics(),
                now,
                || unreachable!(),
            )
            .expect_err("fenced");
        assert_eq!(e.0, ResponseError::FencedMemberEpoch);
        let e = g
            .heartbeat(
                beat("nobody", 1, &BTreeSet::new()),
                &topics(),
                now,
                || unreachable!(),
            )
            .expect_err("unknown");
        assert_eq!(e.0, ResponseError::UnknownMemberId);
        assert_eq!(
            g.validate("m1", a.member_epoch + 1),
            Some(ResponseError::StaleMemberEpoch)
        );
    }

    fn classic(id: &str, owned: &[i32]) -> ClassicJoin {
        ClassicJoin {
            heartbeat: Heartbeat {
                owned: Some(owned.iter().map(|&p| ("a".to_string(), p)).collect()),
                ..join(id, &["a"])
            },
            classic: ClassicMember {
                session_timeout: Duration::from_secs(45),
                protocols: vec![("range".into(), Bytes::new())],
            },
        }
    }

    fn parts(set: &BTreeSet<TopicPartition>) -> Vec<i32> {
        set.iter().map(|(_, p)| *p).collect()
    }

    #[test]
    fn a_classic_member_shares_a_consumer_group_through_rejoins() {
        let t = BTreeMap::from([("a".to_string(), 4)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::new("uniform");
        let a1 = g
            .heartbeat(join("m1", &["a"]), &t, now, || unreachable!())
            .expect("m1");
        let m1_parts = a1.assignment.expect("assigned");
        assert_eq!(m1_parts.len(), 4);
        // An eager classic member joins owning nothing: it is at the new epoch at once, and
        // gets only what m1 has given up.
        let generation = g.classic_join(classic("c1", &[]), &t, now).expect("join");
        assert_eq!(generation, g.epoch);
        assert!(g
            .classic_sync("c1", generation, now)
            .expect("sync")
            .is_empty());
        assert_eq!(
            g.classic_heartbeat("c1", generation, now),
            None,
            "nothing free yet"
        );
        assert_eq!(
            g.classic_heartbeat("c1", generation - 1, now),
            Some(ResponseError::IllegalGeneration)
        );
        let r1 = g
            .heartbeat(
                beat("m1", a1.member_epoch, &m1_parts),
                &t,
                now,
                || unreachable!(),
            )
            .expect("m1 told to revoke");
        let kept = r1.assignment.expect("shrunk");
        g.heartbeat(
            beat("m1", r1.member_epoch, &kept),
            &t,
            now,
            || unreachable!(),
        )
        .expect("m1 acknowledges");
        // Now what c1 waits for is free: its heartbeat sends it to rejoin, and it gets it.
        assert_eq!(
            g.classic_heartbeat("c1", generation, now),
            Some(ResponseError::RebalanceInProgress)
        );
        let generation = g.classic_join(classic("c1", &[]), &t, now).expect("rejoin");
        let got = g.classic_sync("c1", generation, now).expect("sync");
        assert_eq!(got.len(), 2);
        assert!(got.is_disjoint(&kept));
        assert_eq!(g.classic_heartbeat("c1", generation, now), None);
        assert_eq!(g.state(), "Stable");
        // A consumer-protocol request for the classic member, or a classic one for m1, is refused.
        assert_eq!(
            g.classic_sync("m1", g.epoch, now),
            Err(ResponseError::UnknownMemberId)
        );
        assert!(!g.all_classic());
        g.leave("m1");
        assert!(g.all_classic());
    }

    #[test]
    fn a_cooperative_classic_member_gives_up_what_it_owns_before_others_get_it() {
        let t = BTreeMap::from([("a".to_string(), 4)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::from_classic(7, vec![classic("c1", &[0, 1, 2, 3])], &t, now);
        assert_eq!((g.epoch, g.state()), (7, "Stable"));
        assert_eq!(
            g.classic_heartbeat("c1", 7, now),
            None,
            "upgraded as it was"
        );
        let m2 = g
            .heartbeat(join("m2", &["a"]), &t, now, || unreachable!())
            .expect("m2 joins");
        assert!(m2.assignment.unwrap_or_default().is_empty());
        assert_eq!(
            g.classic_heartbeat("c1", 7, now),
            Some(ResponseError::RebalanceInProgress)
        );
        // Rejoining while owning all four: it keeps two, still at epoch 7, must give two up.
        let generation = g
            .classic_join(classic("c1", &[0, 1, 2, 3]), &t, now)
            .expect("rejoin");
        assert_eq!(generation, 7);
        let kept = g.classic_sync("c1", generation, now).expect("sync");
        assert_eq!(kept.len(), 2);
        let m2 = g
            .heartbeat(
                beat("m2", m2.member_epoch, &BTreeSet::new()),
                &t,
                now,
                || unreachable!(),
            )
            .expect("m2");
        assert!(
            m2.assignment.unwrap_or_default().is_empty(),
            "still owned by c1"
        );
        // It revoked them and rejoins owning the rest: then it is at the new epoch and m2 may
        // take the two.
        let owned: Vec<i32> = parts(&kept);
        let generation = g
            .classic_join(classic("c1", &owned), &t, now)
            .expect("rejoin");
        assert_eq!(generation, g.epoch);
        let m2 = g
            .heartbeat(
                beat("m2", g.epoch, &BTreeSet::new()),
                &t,
                now,
                || unreachable!(),
            )
            .expect("m2");
        let got = m2.assignment.expect("released partitions");
        assert!(got.is_disjoint(&kept) && got.len() == 2);
    }

    #[test]
    fn range_gives_contiguous_ranges_per_topic() {
        let subs = BTreeMap::from([
            (
                "m1".to_string(),
                BTreeSet::from(["a".to_string(), "b".to_string()]),
            ),
            ("m2".to_string(), BTreeSet::from(["a".to_string()])),
        ]);
        let out = assign_range(&subs, &topics());
        let parts = |m: &str| {
            out[m]
                .iter()
                .map(|(t, p)| format!("{t}{p}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(parts("m1"), ["a0", "a1", "a2", "b0", "b1"]);
        assert_eq!(parts("m2"), ["a3", "a4", "a5"]);
    }

    #[test]
    fn a_regex_subscription_takes_matching_topics() {
        let mut g = ConsumerGroup::new("uniform");
        let a = g
            .heartbeat(
                Heartbeat {
                    subscribed: None,
                    regex: Some("b|c.*".into()),
                    ..join("m1", &[])
                },
                &topics(),
                Instant::now(),
                || unreachable!(),
            )
            .expect("join");
        let topics_got: BTreeSet<String> = a
            .assignment
            .expect("assigned")
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(topics_got, BTreeSet::from(["b".to_string()]));
    }
}
