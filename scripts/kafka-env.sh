# Sourced by the kafka-*.sh helpers: where the Apache Kafka distribution lives.
# KAFKA_VERSION and KAFKA_HOME may be set by the caller.
KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"
GREGOR_CACHE="${GREGOR_CACHE:-$HOME/.cache/gregor}"
KAFKA_HOME="${KAFKA_HOME:-$GREGOR_CACHE/kafka-$KAFKA_VERSION}"
KAFKA_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export KAFKA_VERSION GREGOR_CACHE KAFKA_HOME KAFKA_SCRIPTS_DIR
