//! Three quorum members on loopback in one process, each with its own directory and controller
//! listener: leader election, replication of metadata records, failover, catch-up after a
//! restart, cluster-id refusal and no progress without a majority; and learners (broker-only
//! members) beside them: they apply what commits, forward writes, show up as observers, rejoin
//! after a restart, never count toward a majority, and leave the membership when removed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::learner::{JoinError, LearnerRefusal};
use super::node::{MemberRole, QuorumConfig, QuorumNode};
use super::rpc::{read_frame, write_frame, Refusal, RequestFrame, ResponseFrame, Rpc};
use super::types::{ControllerNode, NodeId};
use crate::cluster::metadata::MetadataRecord;

const CLUSTER: &str = "MkU3OEVBNTcwNTJENDM2Qk";

struct Harness {
    dirs: Vec<tempfile::TempDir>,
    voters: BTreeMap<NodeId, ControllerNode>,
    nodes: BTreeMap<NodeId, QuorumNode>,
}

fn config(h: &Harness, id: NodeId) -> QuorumConfig {
    QuorumConfig {
        node_id: id,
        role: MemberRole::Voter,
        voters: h.voters.clone(),
        dir: h.dirs[id as usize - 1].path().join("raft"),
        cluster_id: CLUSTER.into(),
        heartbeat: Duration::from_millis(50),
        election_timeout: Duration::from_millis(300),
        liveness: Default::default(),
        transport: std::sync::Arc::new(super::transport::Plaintext),
        authorizer: None,
    }
}

async fn start_three() -> Harness {
    let mut listeners = Vec::new();
    let mut voters = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        voters.insert(
            id,
            ControllerNode {
                host: "127.0.0.1".into(),
                port,
            },
        );
        listeners.push((id, l));
    }
    let mut h = Harness {
        dirs: (0..3)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect(),
        voters,
        nodes: BTreeMap::new(),
    };
    for (id, l) in listeners {
        let node = QuorumNode::start(config(&h, id), l).await.expect("start");
        h.nodes.insert(id, node);
    }
    h
}

async fn restart(h: &mut Harness, id: NodeId) {
    let port = h.voters[&id].port;
    let l = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind the same port");
    let node = QuorumNode::start(config(h, id), l).await.expect("restart");
    h.nodes.insert(id, node);
}

async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The leader all running nodes agree on.
async fn agreed_leader(h: &Harness) -> NodeId {
    eventually("an agreed leader", || {
        let leaders: Vec<Option<NodeId>> = h.nodes.values().map(|n| n.leader()).collect();
        match leaders.first() {
            Some(Some(l)) if leaders.iter().all(|x| *x == Some(*l)) && h.nodes.contains_key(l) => {
                Some(*l)
            }
            _ => None,
        }
    })
    .await
}

fn topic(name: &str) -> MetadataRecord {
    MetadataRecord::Topic {
        name: name.into(),
        id: uuid::Uuid::new_v4(),
        partitions: 3,
        replication_factor: 3,
        configs: Default::default(),
    }
}

async fn all_have(h: &Harness, name: &str) {
    eventually(&format!("every node to apply {name}"), || {
        h.nodes
            .values()
            .all(|n| n.applied().image.topics.contains_key(name))
            .then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_a_leader_and_replicate_metadata() {
    let h = start_three().await;
    let leader = agreed_leader(&h).await;
    let r = h.nodes[&leader]
        .write(vec![topic("orders")])
        .await
        .expect("write");
    assert_eq!(r.applied, 1);
    all_have(&h, "orders").await;
    // A follower forwards a write to the leader and returns once it has applied it itself.
    let follower = h
        .nodes
        .keys()
        .copied()
        .find(|id| *id != leader)
        .expect("a follower");
    let r = h.nodes[&follower]
        .write(vec![topic("via-follower")])
        .await
        .expect("forwarded write");
    assert_eq!(r.applied, 1);
    assert!(h.nodes[&follower]
        .applied()
        .image
        .topics
        .contains_key("via-follower"));
    all_have(&h, "via-follower").await;
    for (_, n) in h.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_elects_another_and_the_old_one_catches_up() {
    let mut h = start_three().await;
    let first = agreed_leader(&h).await;
    h.nodes[&first]
        .write(vec![topic("before")])
        .await
        .expect("write");
    all_have(&h, "before").await;
    h.nodes.remove(&first).expect("leader").shutdown().await;
    let second = agreed_leader(&h).await;
    assert_ne!(second, first);
    h.nodes[&second]
        .write(vec![topic("after")])
        .await
        .expect("write with two of three");
    all_have(&h, "after").await;
    restart(&mut h, first).await;
    all_have(&h, "after").await;
    assert!(
        h.nodes[&first]
            .applied()
            .image
            .topics
            .contains_key("before"),
        "kept its own log"
    );
    for (_, n) in h.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_nothing_commits_and_it_heals_when_nodes_return() {
    let mut h = start_three().await;
    let leader = agreed_leader(&h).await;
    lose_the_majority_then_heal(&mut h, leader).await;
    for (_, n) in h.nodes {
        n.shutdown().await;
    }
}

/// Stops every voter but `leader`, checks that its write does not commit, then restarts them
/// and checks that the quorum commits again.
async fn lose_the_majority_then_heal(h: &mut Harness, leader: NodeId) {
    let others: Vec<NodeId> = h
        .voters
        .keys()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    for id in &others {
        h.nodes.remove(id).expect("voter").shutdown().await;
    }
    let stuck = tokio::time::timeout(
        Duration::from_secs(2),
        h.nodes[&leader].write(vec![topic("lonely")]),
    )
    .await;
    assert!(
        !matches!(stuck, Ok(Ok(_))),
        "a write committed with one voter of three: {stuck:?}"
    );
    for id in others {
        restart(h, id).await;
    }
    let leader = agreed_leader(h).await;
    h.nodes[&leader]
        .write(vec![topic("healed")])
        .await
        .expect("write after healing");
    all_have(h, "healed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_from_another_cluster_is_refused() {
    let h = start_three().await;
    let addr = h.voters[&1].to_string();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let frame = RequestFrame {
        cluster_id: "AnotherClusterIdXXXXXX".into(),
        from: 9,
        rpc: Rpc::Vote(openraft::raft::VoteRequest {
            vote: openraft::Vote::new(99, 9),
            last_log_id: None,
        }),
    };
    write_frame(&mut s, &serde_json::to_vec(&frame).expect("encode"))
        .await
        .expect("send");
    let reply = read_frame(&mut s).await.expect("read").expect("a reply");
    match serde_json::from_slice::<ResponseFrame>(&reply).expect("decode") {
        ResponseFrame::Refused(Refusal::ClusterIdMismatch { from, ours, .. }) => {
            assert_eq!((from, ours.as_str()), (9, CLUSTER));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The refused vote (term 99) did not disturb the quorum.
    let leader = agreed_leader(&h).await;
    h.nodes[&leader]
        .write(vec![topic("still-fine")])
        .await
        .expect("write");
    for (_, n) in h.nodes {
        n.shutdown().await;
    }
}

/// Starts learner `id` (ids past the voters') on a fresh loopback port, in its own directory
/// the first time, and returns once it has joined, seen the leader and caught up.
async fn start_learner(h: &mut Harness, id: NodeId) -> ControllerNode {
    while h.dirs.len() < id as usize {
        h.dirs.push(tempfile::tempdir().expect("tempdir"));
    }
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let advertised = ControllerNode {
        host: "127.0.0.1".into(),
        port: l.local_addr().expect("addr").port(),
    };
    let cfg = QuorumConfig {
        role: MemberRole::Learner {
            advertised: advertised.clone(),
        },
        ..config(h, id)
    };
    let node = QuorumNode::start(cfg, l).await.expect("start a learner");
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = node.settle(Duration::from_secs(5)).await {
        assert!(Instant::now() < deadline, "learner {id} never settled: {e}");
    }
    h.nodes.insert(id, node);
    advertised
}

fn ids(members: &[super::status::MemberStatus]) -> Vec<NodeId> {
    members.iter().map(|m| m.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_applies_commits_forwards_writes_and_is_an_observer() {
    let mut h = start_three().await;
    let leader = agreed_leader(&h).await;
    h.nodes[&leader]
        .write(vec![topic("before-join")])
        .await
        .expect("write");
    start_learner(&mut h, 4).await;
    let learner = &h.nodes[&4];
    assert!(!learner.is_voter());
    assert!(
        learner.applied().image.topics.contains_key("before-join"),
        "caught up when settled"
    );
    h.nodes[&leader]
        .write(vec![topic("after-join")])
        .await
        .expect("write");
    all_have(&h, "after-join").await;
    // The learner's own write goes through the leader and is applied here when it returns.
    let r = h.nodes[&4]
        .write(vec![topic("from-learner")])
        .await
        .expect("forwarded write");
    assert_eq!(r.applied, 1);
    assert!(h.nodes[&4]
        .applied()
        .image
        .topics
        .contains_key("from-learner"));
    all_have(&h, "from-learner").await;
    for (id, n) in &h.nodes {
        let voters: Vec<NodeId> = n.voters().into_iter().map(|(v, _)| v).collect();
        assert_eq!(voters, vec![1, 2, 3], "voters as node {id} sees them");
    }
    assert_eq!(
        h.nodes[&leader]
            .learners()
            .into_iter()
            .map(|(l, _)| l)
            .collect::<Vec<_>>(),
        vec![4]
    );
    // DescribeQuorum's view, asked of the learner (which asks the leader): an observer with
    // the leader's log end, heard from recently.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = h.nodes[&4].status().await;
        let caught_up = status.observers.first().is_some_and(|o| {
            let leader_leo = status
                .voters
                .iter()
                .find(|v| Some(v.id) == status.leader)
                .map(|v| v.log_end_offset);
            Some(o.log_end_offset) == leader_leo && o.last_seen_ms > 0
        });
        if caught_up {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the learner never showed as a caught-up observer: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ids(&status.voters), vec![1, 2, 3]);
    assert_eq!(ids(&status.observers), vec![4]);
    assert_eq!(status.leader, Some(leader));
    for (_, n) in h.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_rejoins_after_a_restart_on_another_address() {
    let mut h = start_three().await;
    let first = start_learner(&mut h, 4).await;
    let leader = agreed_leader(&h).await;
    // Joining again at the same address changes nothing.
    let membership_at = || {
        *h.nodes[&leader]
            .raft()
            .metrics()
            .borrow()
            .membership_config
            .log_id()
    };
    let before = membership_at();
    h.nodes[&4].join().await.expect("join again");
    assert_eq!(
        membership_at(),
        before,
        "a repeated join wrote a membership"
    );
    h.nodes.remove(&4).expect("learner").shutdown().await;
    h.nodes[&leader]
        .write(vec![topic("while-away")])
        .await
        .expect("write without the learner");
    let second = start_learner(&mut h, 4).await;
    assert_ne!(first, second, "the restart bound another port");
    let learners = h.nodes[&leader].learners();
    assert_eq!(
        learners,
        vec![(4, second)],
        "the leader replicates to the new address"
    );
    assert!(
        h.nodes[&4]
            .applied()
            .image
            .topics
            .contains_key("while-away"),
        "caught up after the restart"
    );
    h.nodes[&leader]
        .write(vec![topic("after-restart")])
        .await
        .expect("write");
    all_have(&h, "after-restart").await;
    for (_, n) in h.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learners_never_count_toward_a_majority() {
    let mut h = start_three().await;
    start_learner(&mut h, 4).await;
    start_learner(&mut h, 5).await;
    // A learner gone: the voters commit as before.
    h.nodes.remove(&5).expect("learner").shutdown().await;
    let leader = agreed_leader(&h).await;
    tokio::time::timeout(
        Duration::from_secs(5),
        h.nodes[&leader].write(vec![topic("without-a-learner")]),
    )
    .await
    .expect("committed in time")
    .expect("write");
    all_have(&h, "without-a-learner").await;
    start_learner(&mut h, 5).await;
    // Two voters gone: the leader and two learners would be three of five members, a majority
    // if learners voted; they do not, so nothing commits.
    lose_the_majority_then_heal(&mut h, leader).await;
    for (_, n) in h.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_id_cannot_join_as_a_learner() {
    let h = start_three().await;
    agreed_leader(&h).await;
    let somewhere = ControllerNode {
        host: "127.0.0.1".into(),
        port: 1,
    };
    let peer = super::network::Peer {
        cluster_id: CLUSTER.into(),
        transport: std::sync::Arc::new(super::transport::Plaintext),
    };
    let refused = super::learner::join(&peer, 2, &somewhere, &h.voters).await;
    assert!(
        matches!(refused, Err(JoinError::Refused(LearnerRefusal::IsVoter(2)))),
        "{refused:?}"
    );
    for (_, n) in h.nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_learner_leaves_the_membership_and_is_replicated_to_no_more() {
    let mut h = start_three().await;
    start_learner(&mut h, 4).await;
    let leader = agreed_leader(&h).await;
    let follower = *h
        .nodes
        .keys()
        .find(|id| **id != leader && **id <= 3)
        .unwrap();
    let replicated_to = |h: &Harness, id: NodeId| {
        h.nodes[&leader]
            .raft()
            .metrics()
            .borrow()
            .replication
            .as_ref()
            .is_some_and(|r| r.contains_key(&id))
    };
    assert!(replicated_to(&h, 4), "the leader replicates to the learner");

    // Asked of a follower: forwarded to the leader.
    let removed = h.nodes[&follower].remove_learner(4).await;
    assert_eq!(removed, Ok(true));
    for id in 1..=3 {
        eventually(&format!("node {id} to drop the learner"), || {
            h.nodes[&id].learners().is_empty().then_some(())
        })
        .await;
    }
    eventually("the leader to stop replicating to it", || {
        (!replicated_to(&h, 4)).then_some(())
    })
    .await;
    assert_eq!(
        h.nodes[&leader].remove_learner(4).await,
        Ok(false),
        "no longer a learner"
    );
    h.nodes[&leader]
        .write(vec![topic("after-removal")])
        .await
        .expect("write");
    for id in 1..=3 {
        let n = &h.nodes[&id];
        eventually("the voters to apply it", || {
            n.applied()
                .image
                .topics
                .contains_key("after-removal")
                .then_some(())
        })
        .await;
    }
    assert!(
        !h.nodes[&4]
            .applied()
            .image
            .topics
            .contains_key("after-removal"),
        "the removed learner was sent the write"
    );

    // Voters are static: refused, from the leader and from a follower.
    for (asker, voter) in [(leader, follower), (follower, leader)] {
        let refused = h.nodes[&asker].remove_learner(voter).await;
        assert_eq!(refused, Err(LearnerRefusal::VoterStays(voter)));
    }
    assert_eq!(h.nodes[&leader].voters().len(), 3);

    // Should it start again, it joins again.
    h.nodes[&4].join().await.expect("join again");
    assert_eq!(h.nodes[&leader].learners().len(), 1);
    eventually("the learner to catch up again", || {
        h.nodes[&4]
            .applied()
            .image
            .topics
            .contains_key("after-removal")
            .then_some(())
    })
    .await;
    for (_, n) in h.nodes {
        n.shutdown().await;
    }
}
