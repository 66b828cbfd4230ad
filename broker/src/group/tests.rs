//! Coordinator state-machine tests: joins, syncs, heartbeats, leaves and expiry, in memory.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::*;
use crate::config::{parse_properties, Config};

fn coordinator(dir: &std::path::Path) -> GroupCoordinator {
    let props = parse_properties(&format!(
        "node.id=1\nlog.dirs={}\ngroup.initial.rebalance.delay.ms=0\n\
         group.min.session.timeout.ms=10\n",
        dir.display()
    ));
    let config = Arc::new(Config::from_properties(props).expect("config"));
    let cluster = Cluster::open(config, "cluster".into()).expect("cluster");
    GroupCoordinator::new(Arc::new(cluster))
}

/// A committed offset with no metadata.
fn offset(offset: i64) -> OffsetValue {
    OffsetValue {
        offset,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp: 1,
    }
}

fn join_req(member: &str, session_ms: i32) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member.into(),
        group_instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: session_ms,
        rebalance_timeout_ms: 1000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"m"))],
        require_known_member_id: true,
    }
}

/// Joins a new member through MEMBER_ID_REQUIRED; returns its id and the pending join.
fn join_new(c: &GroupCoordinator, session_ms: i32) -> (String, oneshot::Receiver<JoinResult>) {
    let first = c.join(join_req("", session_ms)).expect("immediate answer");
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    match c.join(join_req(&first.member_id, session_ms)) {
        Err(rx) => (first.member_id, rx),
        Ok(r) => panic!("expected to wait, got {r:?}"),
    }
}

#[tokio::test]
async fn a_lone_member_becomes_leader_and_gets_its_assignment() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = coordinator(d.path());
    let (id, rx) = join_new(&c, 10_000);
    let r = rx.await.expect("join completes");
    assert_eq!(
        (r.error, r.generation_id, r.leader.as_str()),
        (None, 1, id.as_str())
    );
    assert_eq!(r.members.len(), 1);
    // The leader's own sync resolves through its waiter, with its assignment.
    let Err(sync) = c.sync(
        "g",
        (&id, None),
        1,
        vec![(id.clone(), Bytes::from_static(b"a"))],
    ) else {
        panic!("sync in CompletingRebalance parks a waiter")
    };
    assert_eq!(sync.await.expect("sync"), Ok(Bytes::from_static(b"a")));
    assert_eq!(c.heartbeat("g", (&id, None), 1), None);
    assert_eq!(c.describe("g").map(|d| d.state), Some(GroupState::Stable));
}

#[tokio::test]
async fn a_second_member_triggers_a_rebalance_and_both_rejoin() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = coordinator(d.path());
    let (a, rx) = join_new(&c, 10_000);
    rx.await.expect("first generation");
    let Err(sync_rx) = c.sync(
        "g",
        (&a, None),
        1,
        vec![(a.clone(), Bytes::from_static(b"x"))],
    ) else {
        panic!("leader sync waits on its own waiter")
    };
    assert_eq!(sync_rx.await.expect("sync"), Ok(Bytes::from_static(b"x")));
    let (b, rx_b) = join_new(&c, 10_000);
    assert_eq!(
        c.heartbeat("g", (&a, None), 1),
        Some(ResponseError::RebalanceInProgress)
    );
    let Err(rx_a) = c.join(join_req(&a, 10_000)) else {
        panic!("rejoin waits")
    };
    let (ra, rb) = (rx_a.await.expect("a"), rx_b.await.expect("b"));
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    assert_eq!(ra.leader, a, "the existing leader stays leader");
    assert_eq!(ra.members.len(), 2);
    assert!(
        rb.members.is_empty(),
        "followers do not get the member list"
    );
    assert_eq!(
        c.heartbeat("g", (&b, None), 1),
        Some(ResponseError::IllegalGeneration)
    );
}

#[tokio::test]
async fn leaving_and_expiring_members_empty_the_group() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = coordinator(d.path());
    let (a, rx) = join_new(&c, 10_000);
    rx.await.expect("join");
    assert_eq!(
        c.leave("g", &[(a.clone(), None), ("nobody".into(), None)]),
        vec![None, Some(ResponseError::UnknownMemberId)]
    );
    assert_eq!(c.describe("g").map(|d| d.state), Some(GroupState::Empty));
    let (b, rx) = join_new(&c, 50);
    rx.await.expect("join");
    tokio::time::sleep(Duration::from_millis(120)).await;
    c.tick();
    assert_eq!(
        c.heartbeat("g", (&b, None), 3),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn bad_joins_get_kafka_errors() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = coordinator(d.path());
    let mut r = join_req("", 1);
    r.session_timeout_ms = 1;
    assert_eq!(
        c.join(r).map(|r| r.error).ok().flatten(),
        Some(ResponseError::InvalidSessionTimeout)
    );
    let mut r = join_req("", 10_000);
    r.group_id = String::new();
    assert_eq!(
        c.join(r).map(|r| r.error).ok().flatten(),
        Some(ResponseError::InvalidGroupId)
    );
    assert_eq!(
        c.join(join_req("stranger", 10_000))
            .map(|r| r.error)
            .ok()
            .flatten(),
        Some(ResponseError::UnknownMemberId)
    );
}

#[test]
fn committed_offsets_survive_a_reload() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = coordinator(d.path());
    let v = OffsetValue {
        offset: 5,
        leader_epoch: -1,
        metadata: "m".into(),
        commit_timestamp: 1,
    };
    c.commit("g", vec![(("t".into(), 0), v.clone())])
        .expect("commit");
    drop(c);
    let c = coordinator(d.path());
    assert_eq!(c.load().expect("load"), 1);
    assert_eq!(
        c.fetch_offsets("g", None),
        vec![(("t".to_string(), 0), Some(v))]
    );
}

#[tokio::test]
async fn offsets_are_deleted_unless_a_member_subscribes_to_their_topic() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = coordinator(d.path());
    let offsets = vec![(("t".into(), 0), offset(5)), (("u".into(), 0), offset(7))];
    c.commit("g", offsets).expect("commit");
    assert_eq!(
        c.delete_offsets("nope", vec![("t".into(), 0)]).unwrap_err(),
        ResponseError::GroupIdNotFound
    );
    // A member subscribed to `t` (the consumer protocol's subscription): t's offsets stay.
    let subscription =
        crate::tools::consumer_protocol::encode_subscription(&["t".to_string()]).unwrap();
    let mut join = join_req("", 10_000);
    join.protocols = vec![("range".into(), subscription.clone())];
    join.require_known_member_id = false;
    let member = match c.join(join) {
        Ok(r) => r.member_id,
        Err(rx) => rx.await.expect("join completes").member_id,
    };
    let deleted = c
        .delete_offsets("g", vec![("t".into(), 0), ("u".into(), 0), ("u".into(), 1)])
        .expect("delete");
    assert_eq!(
        deleted,
        vec![
            (("u".to_string(), 0), None),
            (("u".to_string(), 1), None),
            (
                ("t".to_string(), 0),
                Some(ResponseError::GroupSubscribedToTopic)
            ),
        ]
    );
    assert_eq!(
        c.fetch_offsets("g", None),
        vec![(("t".to_string(), 0), Some(offset(5)))]
    );
    // Once the member has left, t's go too, and stay gone after a reload.
    c.leave("g", &[(member.clone(), None)]);
    c.delete_offsets("g", vec![("t".into(), 0)])
        .expect("delete");
    drop(c);
    let c = coordinator(d.path());
    c.load().expect("load");
    assert!(c.fetch_offsets("g", None).is_empty());
}

/// A static member's JoinGroup: instance id `instance`, member id `member` ("" when new).
fn static_join(member: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.into()),
        ..join_req(member, 10_000)
    }
}

#[tokio::test]
async fn a_restarted_static_member_takes_its_place_without_a_rebalance() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = coordinator(d.path());
    // Two static members: no MEMBER_ID_REQUIRED round, one generation for both.
    let Err(rx_a) = c.join(static_join("", "ia")) else {
        panic!("waits for the rebalance")
    };
    let first = rx_a.await.expect("a joins");
    assert_eq!((first.error, first.generation_id), (None, 1));
    let a = first.member_id.clone();
    assert!(a.starts_with("ia-"), "{a}");
    let assign = |id: &str, bytes: &'static [u8]| (id.to_string(), Bytes::from_static(bytes));
    let Err(sync) = c.sync("g", (&a, Some("ia")), 1, vec![assign(&a, b"A")]) else {
        panic!("the leader's sync")
    };
    assert_eq!(sync.await.expect("sync"), Ok(Bytes::from_static(b"A")));
    let Err(rx_b) = c.join(static_join("", "ib")) else {
        panic!("b's join starts a rebalance")
    };
    let Err(rx_a) = c.join(static_join(&a, "ia")) else {
        panic!("a rejoins")
    };
    let (ra, rb) = (rx_a.await.expect("a"), rx_b.await.expect("b"));
    let b = rb.member_id.clone();
    assert_eq!(
        (ra.generation_id, rb.generation_id, ra.leader.as_str()),
        (2, 2, a.as_str())
    );
    let Err(sync_b) = c.sync("g", (&b, Some("ib")), 2, vec![]) else {
        panic!("b waits for the leader")
    };
    let Err(sync_a) = c.sync(
        "g",
        (&a, Some("ia")),
        2,
        vec![assign(&a, b"A2"), assign(&b, b"B2")],
    ) else {
        panic!("the leader's sync")
    };
    assert_eq!(sync_a.await.expect("a"), Ok(Bytes::from_static(b"A2")));
    assert_eq!(sync_b.await.expect("b"), Ok(Bytes::from_static(b"B2")));

    // The leader restarts (no LeaveGroup, as a static member closes): at once back, same
    // generation, told the old leader id so it only syncs, and given its assignment back.
    let Ok(back) = c.join(static_join("", "ia")) else {
        panic!("a stable group answers a returning static member at once")
    };
    let a2 = back.member_id.clone();
    assert_ne!(a2, a);
    assert_eq!(
        (back.error, back.generation_id, back.leader.as_str()),
        (None, 2, a.as_str())
    );
    assert!(back.members.is_empty());
    assert_eq!(
        c.sync("g", (&a2, Some("ia")), 2, vec![]).ok(),
        Some(Ok(Bytes::from_static(b"A2")))
    );
    assert_eq!(
        c.heartbeat("g", (&b, Some("ib")), 2),
        None,
        "b saw no rebalance"
    );
    assert_eq!(c.describe("g").map(|d| d.state), Some(GroupState::Stable));

    // The old incarnation is fenced wherever it shows up.
    assert_eq!(
        c.heartbeat("g", (&a, Some("ia")), 2),
        Some(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        c.validate_commit("g", (&a, Some("ia")), 2),
        Some(ResponseError::FencedInstanceId)
    );
    let Ok(again) = c.join(static_join(&a, "ia")) else {
        panic!("answered at once")
    };
    assert_eq!(again.error, Some(ResponseError::FencedInstanceId));
    assert_eq!(
        c.leave("g", &[(a.clone(), Some("ia".into()))]),
        vec![Some(ResponseError::FencedInstanceId)]
    );

    // Removed by its instance id alone: the group rebalances without it.
    assert_eq!(
        c.leave("g", &[(String::new(), Some("ib".into()))]),
        vec![None]
    );
    assert_eq!(
        c.heartbeat("g", (&a2, Some("ia")), 2),
        Some(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn a_share_group_outlives_a_load_of_its_offsets_partition() {
    // Loading an offsets partition keeps the groups that hold state; a share group holds no
    // offsets and, once its members left, no members, but it still exists (Kafka lists it).
    let mut g = Group::new();
    assert!(!g.holds_state(), "a new group holds nothing");
    g.share = Some(crate::share::group::ShareGroup::new());
    assert!(g.holds_state());
}

#[tokio::test]
async fn the_metrics_view_lists_every_group_but_details_only_those_within_the_caps() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = coordinator(d.path());
    for g in ["a", "b", "c"] {
        let offsets = (0..3).map(|p| (("t".to_string(), p), offset(10 + p as i64)));
        c.commit(g, offsets.collect()).expect("commit");
    }
    let (_, rx) = join_new(&c, 10_000);
    rx.await.expect("joined");
    // Groups "a", "b", "c" and "g" (one member); two groups and four offsets in detail.
    let view = c.metrics_view(2, 4);
    let ids: Vec<_> = view.listed.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(
        view.members,
        vec![("a".to_string(), 0), ("b".to_string(), 0)]
    );
    assert_eq!(
        view.offsets,
        vec![
            ("a".into(), "t".into(), 0, 10),
            ("a".into(), "t".into(), 1, 11),
            ("a".into(), "t".into(), 2, 12),
            ("b".into(), "t".into(), 0, 10),
        ]
    );
    let view = c.metrics_view(10, 100);
    assert!(view.members.contains(&("g".to_string(), 1)), "{view:?}");
}
