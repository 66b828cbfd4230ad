#!/usr/bin/env bash
# Makes the builder image the Dockerfile's BUILDER arg names when no registry can be reached:
# a Debian bookworm minbase root made with debootstrap from Debian's mirror (gcc and libc6-dev
# included: ring and zstd-sys compile C), plus this machine's Rust toolchain from rustup (its
# docs left out), joined by `docker import`. Nothing is pulled from an image registry.
#
# The root is cached as a tarball under ~/.cache/gregor/docker; the image is remade only when
# the root or the toolchain changes (a label on it records both).
#
# Env: BUILDER (image name, default gregor-builder:local), RUST_TOOLCHAIN (rustup toolchain,
# default 1.95.0), DEBIAN_MIRROR (default http://deb.debian.org/debian), GREGOR_CACHE (default
# ~/.cache/gregor). Needs root, a running docker daemon and debootstrap (apt-get install
# docker.io debootstrap). Prints the image name on stdout; progress goes to stderr.
set -euo pipefail
builder="${BUILDER:-gregor-builder:local}"
toolchain="${RUST_TOOLCHAIN:-1.95.0}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${GREGOR_CACHE:-$HOME/.cache/gregor}/docker"
suite=bookworm
rootfs="$cache/$suite-minbase-build.tar.gz"
say() { echo "==> [docker-builder] $*" >&2; }

command -v docker >/dev/null || { echo "docker not found (apt-get install docker.io)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "no docker daemon (start one: dockerd >/tmp/dockerd.log 2>&1 &)" >&2; exit 1; }

sysroot="$(rustc "+$toolchain" --print sysroot)"
rust_version="$(rustc "+$toolchain" --version)"
[[ -x "$sysroot/bin/cargo" ]] || { echo "toolchain $toolchain has no cargo in $sysroot" >&2; exit 1; }

mkdir -p "$cache"
if [[ ! -s "$rootfs" ]]; then
  command -v debootstrap >/dev/null || { echo "debootstrap not found (apt-get install debootstrap)" >&2; exit 1; }
  [[ $EUID == 0 ]] || { echo "debootstrap needs root" >&2; exit 1; }
  work="$(mktemp -d "$cache/debootstrap.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  say "debootstrap --variant=minbase $suite from $mirror (once; cached as $rootfs)"
  debootstrap --variant=minbase --include=gcc,libc6-dev "$suite" "$work/root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  # What only made the root, not what builds in it.
  rm -rf "$work"/root/var/cache/apt/archives/*.deb "$work"/root/var/lib/apt/lists/* \
    "$work"/root/var/log/* "$work"/root/usr/share/doc/* "$work"/root/usr/share/man/*
  tar -C "$work/root" --numeric-owner -czf "$rootfs.part" .
  mv "$rootfs.part" "$rootfs"
  rm -rf "$work"
  trap - EXIT
fi

stamp="$(sha256sum "$rootfs" | cut -c1-16) $rust_version"
label=dev.gregor.builder.stamp
if [[ "$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$builder" 2>/dev/null)" == "$stamp" ]]; then
  say "$builder is up to date ($rust_version)"
  echo "$builder"
  exit 0
fi

say "importing $builder: $suite root + $rust_version"
work="$(mktemp -d "$cache/builder.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xzf "$rootfs"
mkdir -p "$work/usr/local/rust" "$work/usr/local/cargo"
cp -a "$sysroot/bin" "$sysroot/lib" "$work/usr/local/rust/"
[[ -d "$sysroot/libexec" ]] && cp -a "$sysroot/libexec" "$work/usr/local/rust/"
tar -C "$work" --numeric-owner -cf - . | docker import \
  --change "ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV CARGO_HOME=/usr/local/cargo" \
  --change "LABEL $label=\"$stamp\"" \
  --change "CMD [\"/bin/bash\"]" \
  - "$builder" >/dev/null
docker run --rm "$builder" sh -c 'cargo --version && rustc --version && cc --version | head -n 1' >&2
echo "$builder"
