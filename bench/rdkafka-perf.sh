#!/usr/bin/env bash
# Builds librdkafka's own load generator, examples/rdkafka_performance.c, from Debian's
# librdkafka source package (pinned by version and SHA-256), linked against Debian's librdkafka
# of the same version (package librdkafka-dev, installed with apt when missing and this runs as
# root). bench/latency.py runs it beside Kafka's ProducerPerformance: a native generator that
# costs the shared cores far less than the JVM tool. Prints the binary's path; cached in
# ~/.cache/gregor/bin, so later runs only print it.
set -euo pipefail
version=2.0.2
sha256=f321bcb1e015a34114c83cf1aa7b99ee260236aab096b85c003170c90a47ca9d
cache="$HOME/.cache/gregor"
bin="$cache/bin/rdkafka_performance-$version"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi

installed=$(dpkg-query -W -f='${Version}' librdkafka-dev 2>/dev/null || true)
if [[ "$installed" != "$version"-* ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "rdkafka-perf.sh: needs librdkafka-dev $version (installed: ${installed:-none})" >&2; exit 1
  fi
  apt-get install -y -q "librdkafka-dev=$version-*" >&2
fi

mkdir -p "$cache/src" "$cache/bin"
tarball="$cache/src/librdkafka_$version.orig.tar.gz"
if [[ ! -f "$tarball" ]]; then
  curl -fsSL -o "$tarball.part" \
    "http://deb.debian.org/debian/pool/main/libr/librdkafka/librdkafka_$version.orig.tar.gz"
  mv "$tarball.part" "$tarball"
fi
echo "$sha256  $tarball" | sha256sum -c --quiet
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
tar xzf "$tarball" -C "$work"
cd "$work/librdkafka-$version"
# configure only writes config.h, which the example's internal headers include; the library
# itself is Debian's.
./configure --disable-ssl --disable-gssapi --disable-sasl --disable-zstd --disable-lz4-ext \
  --disable-curl >/dev/null
gcc -O2 -o "$bin.part" -I src examples/rdkafka_performance.c -lrdkafka -lm -lpthread
mv "$bin.part" "$bin"
echo "$bin"
