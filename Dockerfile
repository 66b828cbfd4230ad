# Gregor's image: the broker `/usr/local/bin/gregor` (the entrypoint) and the operator
# `/usr/local/bin/gregor-operator`, on an empty base holding only the shared libraries they link,
# a nonroot user (65532) and the few writable directories they use.
#
#   docker build -t gregor:0.1.0 .
#
# BUILDER is any Debian-based Rust image with cargo and a C compiler (ring and zstd-sys
# compile C). It must be bookworm or older than the glibc the binaries may need: the libraries
# are copied from it. With no registry at hand, scripts/docker-build.sh makes one
# (gregor-builder:local) and vendors the crates into vendor/crates-io; when that directory is
# in the context the build reads crates from it and never touches the network.
#
# Written for the classic builder and BuildKit alike: no `# syntax=` line and no
# `RUN --mount` (each would need something from a registry).
ARG BUILDER=rust:1.95-bookworm

FROM ${BUILDER} AS build
WORKDIR /build
ENV CARGO_TERM_COLOR=never

# Dependencies first, in a layer of their own: editing Gregor's sources rebuilds only its three
# crates. The stubs stand in for the sources so that cargo compiles every dependency here.
COPY Cargo.toml Cargo.lock ./
COPY vendor vendor
COPY client/Cargo.toml client/
COPY broker/Cargo.toml broker/
COPY operator/Cargo.toml operator/
RUN set -eu; \
    if [ -d vendor/crates-io ]; then \
        mkdir -p .cargo; \
        printf '%s\n' '[source.crates-io]' 'replace-with = "vendored"' \
            '[source.vendored]' 'directory = "vendor/crates-io"' \
            '[net]' 'offline = true' > .cargo/config.toml; \
    fi; \
    mkdir -p client/src broker/src operator/src/bin; \
    for f in broker/src/main.rs operator/src/main.rs operator/src/bin/crdgen.rs; do \
        echo 'fn main() {}' > "$f"; \
    done; \
    touch client/src/lib.rs broker/src/lib.rs operator/src/lib.rs; \
    cargo build --profile dist --locked --bin gregor --bin gregor-operator; \
    rm -rf client/src broker/src operator/src

COPY client/src client/src
COPY broker/src broker/src
COPY operator/src operator/src
# The copies keep the context's modification times, which may be older than the stubs' build:
# touch them so cargo rebuilds Gregor's crates from the real sources.
RUN set -eu; \
    find client/src broker/src operator/src -type f -exec touch {} +; \
    cargo build --profile dist --locked --bin gregor --bin gregor-operator

# The final root, assembled in /out: the binaries (built with the `dist` profile of Cargo.toml:
# whole-program LTO, one codegen unit, symbols stripped, so about 11 and 13 MB instead of 17
# and 22; a panic's backtrace then shows addresses, not function names), every library `ldd`
# lists, the user, and
# /etc/nsswitch.conf so /etc/hosts is read before DNS (glibc >= 2.34 has files and dns built
# into libc, so no NSS modules are needed).
RUN set -eu; \
    mkdir -p /out/usr/local/bin /out/etc /out/tmp /out/home/nonroot /out/var/lib/gregor; \
    for b in gregor gregor-operator; do \
        cp "target/dist/$b" "/out/usr/local/bin/$b"; \
        if ldd "target/dist/$b" | grep -q 'not found'; then ldd "target/dist/$b"; exit 1; fi; \
        ldd "target/dist/$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'; \
    done | sort -u | while read -r lib; do cp -L --parents "$lib" /out; done; \
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > /out/etc/passwd; \
    printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' > /out/etc/group; \
    printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' > /out/etc/nsswitch.conf; \
    chmod 1777 /out/tmp; \
    chown 65532:65532 /out/home/nonroot /out/var/lib/gregor; \
    find /out -type f | sort
# Names the stage's images, so scripts/docker-build.sh can remove the ones a rebuild replaced.
LABEL dev.gregor.stage="build"

FROM scratch
ARG VERSION=0.1.0
ARG REVISION=
LABEL org.opencontainers.image.title="gregor" \
      org.opencontainers.image.description="Gregor, a Kafka-compatible broker (/usr/local/bin/gregor) and its Kubernetes operator (/usr/local/bin/gregor-operator)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="scratch"
COPY --from=build /out/ /
ENV HOME=/home/nonroot
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 9092 9093
ENTRYPOINT ["/usr/local/bin/gregor"]
