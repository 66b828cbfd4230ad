#!/usr/bin/env bash
# Usage: kafka.sh TOOL [ARGS...] — the Apache Kafka CLI, like bin/kafka-TOOL.sh of the
# binary distribution, run from the jars fetched by kafka-dist.sh. TOOL is one of:
#   topics console-producer console-consumer consumer-groups producer-perf-test
#   consumer-perf-test storage server-start get-offsets configs metadata-quorum
#   broker-api-versions delete-records transactions verifiable-producer
#   verifiable-consumer e2e-latency log-dirs features cluster groups reassign-partitions
#   leader-election acls
# or a fully qualified main class.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -ge 1 ]] || { sed -n '2,9p' "$0" >&2; exit 2; }
tool="$1"; shift
fast_start=1   # short-lived tools: C1 only, starts faster
case "$tool" in
  topics)              class=org.apache.kafka.tools.TopicCommand ;;
  console-producer)    class=org.apache.kafka.tools.ConsoleProducer ;;
  console-consumer)    class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
  consumer-groups)     class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  producer-perf-test)  class=org.apache.kafka.tools.ProducerPerformance; fast_start=0 ;;
  consumer-perf-test)  class=org.apache.kafka.tools.ConsumerPerformance; fast_start=0 ;;
  e2e-latency)         class=org.apache.kafka.tools.EndToEndLatency; fast_start=0 ;;
  storage)             class=kafka.tools.StorageTool ;;
  server-start)        class=kafka.Kafka; fast_start=0
                       export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}" ;;
  get-offsets)         class=org.apache.kafka.tools.GetOffsetShell ;;
  configs)             class=kafka.admin.ConfigCommand ;;
  metadata-quorum)     class=org.apache.kafka.tools.MetadataQuorumCommand ;;
  broker-api-versions) class=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
  delete-records)      class=org.apache.kafka.tools.DeleteRecordsCommand ;;
  transactions)        class=org.apache.kafka.tools.TransactionsCommand ;;
  verifiable-producer) class=org.apache.kafka.tools.VerifiableProducer ;;
  verifiable-consumer) class=org.apache.kafka.tools.VerifiableConsumer ;;
  log-dirs)            class=org.apache.kafka.tools.LogDirsCommand ;;
  features)            class=org.apache.kafka.tools.FeatureCommand ;;
  cluster)             class=org.apache.kafka.tools.ClusterTool ;;
  groups)              class=org.apache.kafka.tools.GroupsCommand ;;
  reassign-partitions) class=org.apache.kafka.tools.reassign.ReassignPartitionsCommand ;;
  leader-election)     class=org.apache.kafka.tools.LeaderElectionCommand ;;
  acls)                class=org.apache.kafka.tools.AclCommand ;;
  *.*)                 class="$tool" ;;
  *) echo "kafka.sh: unknown tool '$tool'" >&2; sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
if [[ $fast_start == 1 ]]; then
  export KAFKA_JVM_OPTS="-XX:TieredStopAtLevel=1 ${KAFKA_JVM_OPTS:-}"
fi
exec "$here/kafka-run-class.sh" "$class" "$@"
