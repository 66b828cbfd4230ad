//! The admin requests the CLI tools and the operator both send, built one way: CreateTopics,
//! CreatePartitions, DeleteTopics and DescribeConfigs, with the admin timeout and Kafka's
//! resource and config-source ids.

use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// How long the brokers may take over a create, delete or alter (the `timeout_ms` of admin
/// requests; Kafka's tools default to 30 s as well).
pub const ADMIN_TIMEOUT_MS: i32 = 30_000;

/// Config resource type of a topic.
pub const RESOURCE_TOPIC: i8 = 2;
/// Config resource type of a broker (name: its id, or empty for the cluster-wide default).
pub const RESOURCE_BROKER: i8 = 4;

/// DescribeConfigs source of a value set on the topic itself (DYNAMIC_TOPIC_CONFIG).
pub const SOURCE_TOPIC: i8 = 1;
/// DescribeConfigs source of a cluster-wide dynamic broker config
/// (DYNAMIC_DEFAULT_BROKER_CONFIG).
pub const SOURCE_BROKER_DEFAULT: i8 = 3;
/// DescribeConfigs source of a built-in default; Kafka's describe shows every other.
pub const SOURCE_DEFAULT: i8 = 5;

/// The first DeleteTopics version that names topics in `topics` rather than `topic_names`.
const DELETE_BY_STATE: i16 = 6;

/// A topic name as the protocol carries it.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// How a new topic's partitions are laid out.
#[derive(Debug, Clone, Copy)]
pub enum Layout<'a> {
    /// Counts; -1 leaves either to the broker's default (CreateTopics v4 and later).
    Counts {
        /// Number of partitions.
        partitions: i32,
        /// Replicas per partition.
        replication_factor: i16,
    },
    /// One entry per partition: its replica broker ids, preferred leader first.
    Assignment(&'a [Vec<i32>]),
}

/// CreateTopics for one topic laid out as `layout`, with its config overrides.
pub fn create_topic<'c>(
    topic: &str,
    layout: Layout<'_>,
    configs: impl IntoIterator<Item = (&'c String, &'c String)>,
) -> CreateTopicsRequest {
    let t = CreatableTopic::default()
        .with_name(topic_name(topic))
        .with_configs(
            configs
                .into_iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_value(Some(StrBytes::from_string(v.clone())))
                })
                .collect(),
        );
    let t = match layout {
        Layout::Counts {
            partitions,
            replication_factor,
        } => t
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor),
        // Explicit assignments leave both counts to them.
        Layout::Assignment(assignment) => t
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_assignments(
                assignment
                    .iter()
                    .enumerate()
                    .map(|(i, replicas)| {
                        CreatableReplicaAssignment::default()
                            .with_partition_index(i as i32)
                            .with_broker_ids(broker_ids(replicas))
                    })
                    .collect(),
            ),
    };
    CreateTopicsRequest::default()
        .with_topics(vec![t])
        .with_timeout_ms(ADMIN_TIMEOUT_MS)
}

/// CreatePartitions growing `topic` to `total` partitions; the new ones are placed as
/// `assignment` says, or by the brokers when it is `None`.
pub fn create_partitions(
    topic: &str,
    total: i32,
    assignment: Option<&[Vec<i32>]>,
) -> CreatePartitionsRequest {
    let assignments = assignment.map(|a| {
        a.iter()
            .map(|r| CreatePartitionsAssignment::default().with_broker_ids(broker_ids(r)))
            .collect()
    });
    CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(topic))
            .with_count(total)
            .with_assignments(assignments)])
        .with_timeout_ms(ADMIN_TIMEOUT_MS)
}

/// DeleteTopics for one topic, shaped for request `version`.
pub fn delete_topic(topic: &str, version: i16) -> DeleteTopicsRequest {
    let mut req = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
    if version >= DELETE_BY_STATE {
        req.topics = vec![DeleteTopicState::default().with_name(Some(topic_name(topic)))];
    } else {
        req.topic_names = vec![topic_name(topic)];
    }
    req
}

/// DescribeConfigs of every config of the resources `names`, all of type `resource_type`.
pub fn describe_configs<'n>(
    resource_type: i8,
    names: impl IntoIterator<Item = &'n str>,
) -> DescribeConfigsRequest {
    DescribeConfigsRequest::default().with_resources(
        names
            .into_iter()
            .map(|n| {
                DescribeConfigsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(StrBytes::from_string(n.to_owned()))
                    .with_configuration_keys(None)
            })
            .collect(),
    )
}

/// Broker ids as the protocol carries them.
pub fn broker_ids(replicas: &[i32]) -> Vec<BrokerId> {
    replicas.iter().copied().map(BrokerId).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_names_the_topic_where_the_version_expects_it() {
        let old = delete_topic("t", 5);
        assert_eq!(old.topic_names, vec![topic_name("t")]);
        assert!(old.topics.is_empty());
        let new = delete_topic("t", 6);
        assert!(new.topic_names.is_empty());
        assert_eq!(new.topics[0].name, Some(topic_name("t")));
        assert_eq!(new.timeout_ms, ADMIN_TIMEOUT_MS);
    }

    #[test]
    fn an_assigned_topic_leaves_the_counts_to_its_assignment() {
        let configs = [("retention.ms".to_string(), "1".to_string())];
        let req = create_topic(
            "t",
            Layout::Assignment(&[vec![1, 2], vec![2, 3]]),
            configs.iter().map(|(k, v)| (k, v)),
        );
        let t = &req.topics[0];
        assert_eq!((t.num_partitions, t.replication_factor), (-1, -1));
        assert_eq!(t.assignments[1].broker_ids, broker_ids(&[2, 3]));
        assert_eq!(t.configs[0].value.as_deref(), Some("1"));
        let counted = create_topic(
            "t",
            Layout::Counts {
                partitions: 3,
                replication_factor: -1,
            },
            [],
        );
        let t = &counted.topics[0];
        assert_eq!((t.num_partitions, t.replication_factor), (3, -1));
        assert!(t.assignments.is_empty());
    }
}
