#!/usr/bin/env bash
# Fetches Apache Kafka (server + CLI tools, default 4.3.1) from Maven Central into
# $KAFKA_HOME/libs (default ~/.cache/gregor/kafka-4.3.1/libs). Idempotent: a complete
# download (marked by libs/.complete) is left alone. Prints KAFKA_HOME on stdout.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/kafka-env.sh"

libs="$KAFKA_HOME/libs"
stamp="$KAFKA_VERSION $(sha256sum "$KAFKA_SCRIPTS_DIR/kafka-pom.xml" | cut -c1-16)"
if [[ -f "$libs/.complete" && "$(cat "$libs/.complete")" == "$stamp" ]]; then
  echo "$KAFKA_HOME"
  exit 0
fi

command -v mvn >/dev/null || { echo "kafka-dist: mvn not found" >&2; exit 1; }
command -v java >/dev/null || { echo "kafka-dist: java not found" >&2; exit 1; }

start=$(date +%s)
mkdir -p "$KAFKA_HOME"
tmp="$(mktemp -d "$KAFKA_HOME/libs.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "kafka-dist: resolving Apache Kafka $KAFKA_VERSION from Maven Central..." >&2
# -B: batch mode (no colours, no progress); -q: errors only.
if ! mvn -B -q -f "$KAFKA_SCRIPTS_DIR/kafka-pom.xml" \
    -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
  cat "$tmp.log" >&2
  rm -f "$tmp.log"
  echo "kafka-dist: mvn failed" >&2
  exit 1
fi
rm -f "$tmp.log"
for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar"; do
  [[ -f "$tmp/$jar" ]] || { echo "kafka-dist: $jar missing after download" >&2; exit 1; }
done
echo "$stamp" >"$tmp/.complete"
rm -rf "$libs"
mv "$tmp" "$libs"
trap - EXIT
echo "kafka-dist: $(ls "$libs" | wc -l) jars in $libs ($(( $(date +%s) - start ))s)" >&2
echo "$KAFKA_HOME"
