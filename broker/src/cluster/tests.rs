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
    c.register_broker("h", 9092).expect("register");
    c.create_topic(new_topic("t", 3, 1, None), false)
        .expect("create");
    c.create_partitions("t", 5, false).expect("grow");
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
    assert_eq!(c.brokers()[&1].host, "h");
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
    let dir = t.partition(0).expect("p0").log.lock().dir().to_path_buf();
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
