//! Cluster admin operations on a file-backed metadata store: placement, explicit assignments,
//! registration, and partition states surviving a reopen.

use std::sync::Arc;

use super::*;
use crate::config::parse_properties;

fn open(dir: &std::path::Path) -> Cluster {
    let props = parse_properties(&format!("node.id=1\nlog.dirs={}\n", dir.display()));
    let config = Arc::new(Config::from_properties(props).expect("config"));
    Cluster::open(config, "cluster".into()).expect("open")
}

/// An advertised listener as a broker registers it.
fn endpoint(listener: &str, host: &str, port: u16) -> BrokerEndpoint {
    BrokerEndpoint {
        listener: listener.into(),
        host: host.into(),
        port,
    }
}

fn new_topic(name: &str, partitions: i32, rf: i16, assignments: Option<Vec<Vec<i32>>>) -> NewTopic {
    NewTopic {
        name: name.into(),
        partitions,
        replication_factor: rf,
        configs: Default::default(),
        assignments,
    }
}

#[test]
fn new_topics_get_committed_partition_states_that_survive_a_reopen() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = open(d.path());
    c.register_broker(vec![
        endpoint("EXTERNAL", "ext", 19092),
        endpoint("PLAINTEXT", "h", 9092),
    ])
    .expect("register");
    c.create_topic(new_topic("t", 3, 1, None), false)
        .expect("create");
    c.create_partitions("t", 5, None, false).expect("grow");
    drop(c);
    let c = open(d.path());
    let t = c.topic("t").expect("topic");
    assert_eq!(t.partition_count(), 5);
    for i in 0..5 {
        let s = t.partition(i).expect("partition").state();
        assert_eq!(
            (s.replicas.clone(), s.leader, s.isr.clone()),
            (vec![1], 1, vec![1]),
            "p{i}"
        );
    }
    let me = &c.brokers()[&1];
    assert_eq!(
        (me.host.as_str(), me.port),
        ("h", 9092),
        "the inter-broker listener's address"
    );
    assert_eq!(me.endpoint("EXTERNAL"), Some(("ext", 19092)));
    assert_eq!(me.endpoint("OTHER"), None);
}

#[test]
fn explicit_assignments_must_name_registered_distinct_brokers() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = open(d.path());
    assert!(c
        .create_topic(new_topic("ok", -1, -1, Some(vec![vec![1], vec![1]])), false)
        .is_ok());
    let err = c
        .create_topic(new_topic("ghost", -1, -1, Some(vec![vec![7]])), false)
        .expect_err("broker 7 is not registered");
    assert!(matches!(err, AdminError::InvalidReplicationFactor(m) if m.contains("broker 7")));
    let err = c
        .create_topic(new_topic("dup", -1, -1, Some(vec![vec![1, 1]])), false)
        .expect_err("duplicate replica");
    assert!(matches!(err, AdminError::InvalidReplicationFactor(_)));
    let err = c
        .create_topic(new_topic("rf3", 1, 3, None), false)
        .expect_err("one broker cannot hold three replicas");
    assert!(matches!(err, AdminError::InvalidReplicationFactor(m) if m.contains("1 available")));
}

#[test]
fn reconciling_with_a_committed_image_creates_grows_reconfigures_and_deletes_topics() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = open(d.path());
    let mut image = MetadataImage::default();
    let id = uuid::Uuid::new_v4();
    let apply = |image: &mut MetadataImage, r: MetadataRecord| {
        image.apply(&r);
    };
    apply(
        &mut image,
        MetadataRecord::Topic {
            name: "remote".into(),
            id,
            partitions: 2,
            replication_factor: 1,
            configs: Default::default(),
        },
    );
    apply(
        &mut image,
        MetadataRecord::PartitionState {
            topic: "remote".into(),
            partition: 1,
            replicas: vec![1],
            leader: 1,
            leader_epoch: 3,
            isr: vec![1],
        },
    );
    assert!(c.reconcile(&image).expect("reconcile") > 0);
    let t = c.topic("remote").expect("created from the image");
    assert_eq!(t.partition_count(), 2);
    assert_eq!(t.partition(1).expect("p1").leader_epoch(), 3);
    assert_eq!(
        c.reconcile(&image).expect("again"),
        0,
        "nothing differs the second time"
    );
    apply(
        &mut image,
        MetadataRecord::Partitions {
            name: "remote".into(),
            count: 4,
        },
    );
    apply(
        &mut image,
        MetadataRecord::Configs {
            name: "remote".into(),
            configs: [("retention.ms".to_string(), "1000".to_string())].into(),
        },
    );
    c.reconcile(&image).expect("grow");
    let t = c.topic("remote").expect("topic");
    assert_eq!(t.partition_count(), 4);
    assert_eq!(
        t.configs.read().get("retention.ms").map(String::as_str),
        Some("1000")
    );
    let dir = t
        .partition(0)
        .expect("p0")
        .log()
        .expect("local log")
        .dir()
        .to_path_buf();
    apply(
        &mut image,
        MetadataRecord::RemoveTopic {
            name: "remote".into(),
        },
    );
    c.reconcile(&image).expect("delete");
    assert!(c.topic("remote").is_none());
    assert!(!dir.exists(), "a deleted topic's data is removed");
}

#[test]
fn a_topics_min_insync_replicas_follows_every_change_of_its_configs() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = open(d.path());
    let min_isr = |n: &str| BTreeMap::from([(topic_config::MIN_INSYNC_REPLICAS.into(), n.into())]);
    let mut new = new_topic("t", 1, 1, None);
    new.configs = min_isr("2");
    let t = c.create_topic(new, false).expect("create");
    assert_eq!(t.min_insync_replicas(1), 2, "created with an override");
    c.set_topic_configs("t", BTreeMap::new(), false)
        .expect("alter");
    assert_eq!(t.min_insync_replicas(1), 1, "no override: the broker's");
    assert_eq!(
        t.min_insync_replicas(3),
        3,
        "read live, as dynamic configs change it"
    );
    // Altered through another broker: arrives with the committed image.
    let mut image = MetadataImage::default();
    image.apply(&MetadataRecord::Topic {
        name: "t".into(),
        id: t.id,
        partitions: 1,
        replication_factor: 1,
        configs: min_isr("3"),
    });
    image.apply(&MetadataRecord::PartitionState {
        topic: "t".into(),
        partition: 0,
        replicas: vec![1],
        leader: 1,
        leader_epoch: 0,
        isr: vec![1],
    });
    c.reconcile(&image).expect("reconcile");
    assert!(
        Arc::ptr_eq(&t, &c.topic("t").expect("topic")),
        "the same topic"
    );
    assert_eq!(t.min_insync_replicas(1), 3);
}

/// A one-partition topic "r" with replicas 1, 2, 3 led by `leader` at `epoch`, in an image.
fn replicated(image: &mut MetadataImage, leader: i32, epoch: i32, isr: &[i32]) {
    if image.topics.is_empty() {
        image.apply(&MetadataRecord::Topic {
            name: "r".into(),
            id: uuid::Uuid::nil(),
            partitions: 1,
            replication_factor: 3,
            configs: Default::default(),
        });
    }
    image.apply(&MetadataRecord::PartitionState {
        topic: "r".into(),
        partition: 0,
        replicas: vec![1, 2, 3],
        leader,
        leader_epoch: epoch,
        isr: isr.to_vec(),
    });
}

fn batch_of(n: usize) -> Bytes {
    crate::log::batch::tests::batch_of(n, 0)
}

#[tokio::test]
async fn acks_all_waits_for_the_isr_and_fails_over_when_the_leadership_moves() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = open(d.path());
    let mut image = MetadataImage::default();
    replicated(&mut image, 1, 1, &[1, 2, 3]);
    c.reconcile(&image).expect("reconcile");
    let p = c.partition("r", 0).expect("partition");
    let (outcome, epoch) = c.append(&p, batch_of(3)).expect("append");
    assert!(matches!(outcome, AppendOutcome::Appended(_)));
    assert_eq!(epoch, 1);
    assert_eq!(p.high_watermark(), 0, "followers have nothing yet");
    let short = std::time::Duration::from_millis(20);
    assert_eq!(
        p.wait_for_high_watermark(3, 1, 1, short).await,
        Commit::TimedOut
    );
    assert!(p.on_replica_fetch(2, 3, now_ms()));
    assert_eq!(p.high_watermark(), 0, "follower 3 is still behind");
    assert!(
        !p.on_replica_fetch(7, 3, now_ms()),
        "broker 7 is no replica: refused"
    );
    assert_eq!(p.high_watermark(), 0, "and its fetch counts for nothing");
    assert!(p.on_replica_fetch(3, 3, now_ms()));
    assert_eq!(p.high_watermark(), 3);
    assert_eq!(
        p.wait_for_high_watermark(3, 1, 1, short).await,
        Commit::Committed
    );

    c.append(&p, batch_of(1)).expect("append");
    let waiter = {
        let p = Arc::clone(&p);
        tokio::spawn(async move {
            p.wait_for_high_watermark(4, 1, 1, std::time::Duration::from_secs(30))
                .await
        })
    };
    // Node 2 takes over: the waiter learns at once, and this node refuses client appends.
    replicated(&mut image, 2, 2, &[2, 3]);
    c.reconcile(&image).expect("reconcile");
    assert_eq!(waiter.await.expect("join"), Commit::NotLeader);
    assert!(matches!(
        c.append(&p, batch_of(1)),
        Err(LogError::NotLeader)
    ));
}

#[test]
fn a_new_leader_gives_every_follower_a_full_lag_window_then_shrinks_and_expands_the_isr() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = open(d.path());
    let mut image = MetadataImage::default();
    replicated(&mut image, 1, 0, &[1, 2, 3]);
    c.reconcile(&image).expect("reconcile");
    let p = c.partition("r", 0).expect("partition");
    let start = now_ms();
    assert_eq!(
        p.isr_change(1, 1_000, start, &|_| true),
        None,
        "just elected"
    );
    c.append(&p, batch_of(2)).expect("append");
    assert!(p.on_replica_fetch(2, 2, start + 500));
    let shrunk = p
        .isr_change(1, 1_000, start + 1_200, &|_| true)
        .expect("3 lags");
    assert_eq!(shrunk.isr, vec![1, 2]);
    // Committed: the ISR is {1, 2}; then 3 catches up and may rejoin.
    replicated(&mut image, 1, 0, &[1, 2]);
    c.reconcile(&image).expect("reconcile");
    assert!(p.on_replica_fetch(2, 2, start + 1_300));
    assert_eq!(p.high_watermark(), 2);
    assert!(p.on_replica_fetch(3, 2, start + 1_300));
    assert_eq!(
        p.isr_change(1, 1_000, start + 1_300, &|b| b != 3),
        None,
        "a fenced replica may not rejoin"
    );
    let grown = p
        .isr_change(1, 1_000, start + 1_300, &|_| true)
        .expect("3 rejoins");
    assert_eq!(grown.isr, vec![1, 2, 3]);
    assert_eq!(
        p.isr_change(2, 1_000, start, &|_| true),
        None,
        "only the leader decides"
    );
}

#[test]
fn a_follower_tracks_the_leaders_high_watermark_within_its_own_log() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = open(d.path());
    let mut image = MetadataImage::default();
    replicated(&mut image, 2, 4, &[1, 2, 3]);
    c.reconcile(&image).expect("reconcile");
    let p = c.partition("r", 0).expect("partition");
    assert!(matches!(
        c.append(&p, batch_of(1)),
        Err(LogError::NotLeader)
    ));
    let mut batch = bytes::BytesMut::from(&batch_of(5)[..]);
    // Stamp the leader's epoch (bytes 12..16 of a v2 batch), as the leader would have.
    batch[12..16].copy_from_slice(&4i32.to_be_bytes());
    {
        let mut log = p.log().expect("local log");
        log.append_replica(batch.freeze(), now_ms())
            .expect("replica append");
        p.refresh_follower(&log);
    }
    p.set_follower_high_watermark(9);
    assert_eq!(p.high_watermark(), 5, "no further than this log");
    p.set_follower_high_watermark(3);
    assert_eq!(p.high_watermark(), 3);
    assert_eq!(p.log().expect("local log").latest_epoch(), Some(4));
}

/// The directories in `dir` whose names start with `prefix`, sorted.
fn partition_dirs(dir: &std::path::Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("log dir")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

#[test]
fn a_reopened_replica_takes_its_high_watermark_from_the_checkpoint_within_its_log() {
    let d = tempfile::tempdir().expect("tempdir");
    let mut image = MetadataImage::default();
    replicated(&mut image, 1, 1, &[1, 2, 3]);
    let c = open(d.path());
    c.reconcile(&image).expect("reconcile");
    let p = c.partition("r", 0).expect("partition");
    c.append(&p, batch_of(3)).expect("append");
    assert!(p.on_replica_fetch(2, 3, now_ms()));
    assert!(p.on_replica_fetch(3, 3, now_ms()));
    assert_eq!(p.high_watermark(), 3);
    c.flush_and_checkpoint();
    let file = d.path().join(hw_checkpoint::FILE);
    assert_eq!(
        std::fs::read_to_string(&file).expect("checkpoint"),
        "0\n1\nr 0 3\n"
    );
    drop((p, c));

    // Reopened with the ISR intact: nobody has fetched yet, and still the leader knows what
    // is committed.
    let c = open(d.path());
    c.reconcile(&image).expect("reconcile");
    let p = c.partition("r", 0).expect("partition");
    assert_eq!(p.high_watermark(), 3);
    assert!(p.high_watermark_settled(), "ListOffsets can answer at once");
    drop((p, c));

    // A checkpoint beyond the log (recovery cut it short) is clamped to the log end; with no
    // checkpoint the leader starts from the log start and waits for its followers.
    let mut hws = hw_checkpoint::HighWatermarks::new();
    hws.insert(("r".into(), 0), 10);
    hw_checkpoint::write(d.path(), &hws).expect("write");
    let c = open(d.path());
    c.reconcile(&image).expect("reconcile");
    assert_eq!(c.partition("r", 0).expect("p").high_watermark(), 3);
    drop(c);
    std::fs::remove_file(&file).expect("remove");
    let c = open(d.path());
    c.reconcile(&image).expect("reconcile");
    let p = c.partition("r", 0).expect("partition");
    assert_eq!(p.high_watermark(), 0);
    assert!(!p.high_watermark_settled());
}

#[test]
fn a_node_holds_logs_only_of_its_replicas_and_deletes_one_it_stops_being() {
    let d = tempfile::tempdir().expect("tempdir");
    // Left by an older Gregor, which opened every partition on every node.
    std::fs::create_dir_all(d.path().join("spread-2")).expect("stray dir");
    let c = open(d.path());
    let state = |replicas: Vec<i32>| MetadataRecord::PartitionState {
        topic: "spread".into(),
        partition: 1,
        leader: replicas[0],
        leader_epoch: 1,
        isr: replicas.clone(),
        replicas,
    };
    let mut image = MetadataImage::default();
    image.apply(&MetadataRecord::Topic {
        name: "spread".into(),
        id: uuid::Uuid::nil(),
        partitions: 3,
        replication_factor: 1,
        configs: Default::default(),
    });
    for (partition, replica) in [(0, 1), (1, 2), (2, 3)] {
        image.apply(&MetadataRecord::PartitionState {
            topic: "spread".into(),
            partition,
            replicas: vec![replica],
            leader: replica,
            leader_epoch: 0,
            isr: vec![replica],
        });
    }
    c.reconcile(&image).expect("reconcile");
    assert_eq!(partition_dirs(d.path(), "spread"), ["spread-0"]);
    let p1 = c.partition("spread", 1).expect("known by its state");
    assert!(p1.log().is_none());
    assert_eq!(p1.state().leader, 2);
    assert!(matches!(
        c.append(&p1, batch_of(1)),
        Err(LogError::NotLeader)
    ));

    // A reassignment adds this node to partition 1, then completes without it.
    image.apply(&state(vec![2, 1]));
    c.reconcile(&image).expect("reconcile");
    assert_eq!(partition_dirs(d.path(), "spread"), ["spread-0", "spread-1"]);
    assert!(p1.log().is_some());
    image.apply(&state(vec![2]));
    c.reconcile(&image).expect("reconcile");
    assert_eq!(partition_dirs(d.path(), "spread"), ["spread-0"]);
    assert!(p1.log().is_none());
}

#[test]
fn new_partitions_take_an_explicit_assignment_checked_by_kafkas_rules() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = open(d.path());
    c.register_broker(vec![endpoint("PLAINTEXT", "h", 9092)])
        .expect("register");
    c.create_topic(new_topic("t", 1, 1, None), false)
        .expect("create");
    let refused =
        |assignment: Vec<Vec<i32>>| match c.create_partitions("t", 3, Some(assignment), false) {
            Err(AdminError::InvalidReplicaAssignment(m)) => m,
            other => panic!("expected INVALID_REPLICA_ASSIGNMENT, got {other:?}"),
        };
    assert!(
        refused(vec![vec![1]]).contains("by 2 but 1"),
        "one entry per new partition"
    );
    assert!(
        refused(vec![vec![1], vec![77]]).contains("77"),
        "unknown broker"
    );
    assert!(refused(vec![vec![1], vec![1, 1]]).contains("distinct"));
    assert_eq!(c.topic("t").unwrap().partition_count(), 1, "nothing grew");
    c.create_partitions("t", 3, Some(vec![vec![1], vec![1]]), false)
        .expect("grow as assigned");
    assert_eq!(
        c.topic("t").unwrap().partition(2).unwrap().state().replicas,
        vec![1]
    );
}

#[test]
fn advertised_listeners_register_with_the_ports_their_listeners_got() {
    let props = parse_properties(
        "node.id=1\nlisteners=CLIENT://127.0.0.1:0,EXTERNAL://127.0.0.2:0\n\
         listener.security.protocol.map=CLIENT:PLAINTEXT,EXTERNAL:PLAINTEXT\n\
         inter.broker.listener.name=CLIENT\n\
         advertised.listeners=CLIENT://:0,EXTERNAL://ext.example:0,FIXED://f:7\n",
    );
    let config = Config::from_properties(props).expect("config");
    let bound = [("CLIENT".to_string(), 4001), ("EXTERNAL".to_string(), 4002)];
    assert_eq!(
        advertised_endpoints(&config, &bound),
        [
            endpoint("CLIENT", "localhost", 4001),
            endpoint("EXTERNAL", "ext.example", 4002),
            endpoint("FIXED", "f", 7),
        ]
    );
    let endpoints = advertised_endpoints(&config, &bound);
    assert_eq!(
        inter_broker_address(&config, &endpoints),
        ("localhost".to_string(), 4001)
    );
}

#[test]
fn dynamic_broker_configs_survive_a_reopen_and_retune_topics_without_an_override() {
    let d = tempfile::tempdir().expect("tempdir");
    let c = open(d.path());
    c.create_topic(new_topic("plain", 1, 1, None), false)
        .expect("create");
    let mut own = new_topic("own", 1, 1, None);
    own.configs.insert("retention.ms".into(), "5000".into());
    c.create_topic(own, false).expect("create");
    let retention = |c: &Cluster, topic: &str| {
        let t = c.topic(topic).expect("topic");
        let p = t.partition(0).expect("p0");
        let log = p.log().expect("a replica here");
        log.config().retention_ms
    };
    assert_eq!(retention(&c, "plain"), Some(7 * 24 * 3_600_000));
    let configs = BTreeMap::from([("log.retention.ms".to_string(), "1000".to_string())]);
    c.set_broker_configs("", configs, false).expect("set");
    assert_eq!(retention(&c, "plain"), Some(1000), "applied live");
    assert_eq!(
        retention(&c, "own"),
        Some(5000),
        "the topic's override wins"
    );
    drop(c);
    let c = open(d.path());
    assert_eq!(c.effective_config().log.retention_ms, Some(1000));
    assert_eq!(retention(&c, "plain"), Some(1000), "kept across a restart");
    assert_eq!(
        c.config.log.retention_ms,
        Some(7 * 24 * 3_600_000),
        "static unchanged"
    );
}
