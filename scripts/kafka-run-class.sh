#!/usr/bin/env bash
# Usage: kafka-run-class.sh CLASS [ARGS...]
# Runs a main class of the Apache Kafka distribution fetched by kafka-dist.sh.
# Env: KAFKA_HEAP_OPTS (default -Xms64m -Xmx512m), KAFKA_JVM_OPTS (extra flags),
#      KAFKA_LOG_LEVEL (default WARN, logs go to stderr), JAVA (default java).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/kafka-env.sh"
[[ $# -ge 1 ]] || { echo "usage: $0 CLASS [ARGS...]" >&2; exit 2; }
if [[ ! -f "$KAFKA_HOME/libs/.complete" ]]; then
  "$KAFKA_SCRIPTS_DIR/kafka-dist.sh" >/dev/null
fi
class="$1"; shift
heap="${KAFKA_HEAP_OPTS:--Xms64m -Xmx512m}"
# shellcheck disable=SC2086
exec "${JAVA:-java}" $heap \
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$KAFKA_SCRIPTS_DIR/kafka-log4j2.properties" \
  ${KAFKA_JVM_OPTS:-} \
  -cp "$KAFKA_HOME/libs/*" "$class" "$@"
