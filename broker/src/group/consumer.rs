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
        self.update_member(&id, &req, now);
        if self.topics_changed(topics) {
            self.epoch += 1;
        }
        if self.assignment_epoch < self.epoch {
            self.compute_target(topics);
        }
        let assignment = self.reconcile(&id, req.owned.as_ref(), now);
        let epoch = self.members.get(&id).map_or(-1, |m| m.epoch);
        Ok(HeartbeatAnswer {
            member_id: id,
            member_epoch: epoch,
            assignment,
        })
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
                if let Some(old) = self.members.remove(&id) {
                    // Rejoining under the same id: it starts over.
                    drop(old);
                }
                self.epoch += 1;
                ConsumerMember {
                    instance_id: req.instance_id.clone(),
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
        let held_by_others: BTreeSet<TopicPartition> = self
            .members
            .iter()
            .filter(|(other, _)| other.as_str() != id)
            .flat_map(|(_, m)| m.assigned.iter().chain(&m.revoking).cloned())
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let m = self.members.get_mut(id)?;
        if let Some(owned) = owned {
            if owned.is_disjoint(&m.revoking) {
                m.revoking.clear();
                m.revoke_deadline = None;
            }
        }
        if m.revoking.is_empty() {
            let lose: BTreeSet<TopicPartition> = m.assigned.difference(&target).cloned().collect();
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
                now.duration_since(m.last_heartbeat) > session_timeout
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
