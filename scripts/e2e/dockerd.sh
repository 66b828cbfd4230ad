#!/usr/bin/env bash
# Makes sure a Docker daemon runs here, for the image build and the kind cluster of the
# end-to-end suite: installs Debian's docker.io (and what kind's nodes need from the host)
# when missing, starts dockerd in the background when none answers, and prints "started" when
# this call started it (so the caller can stop it: scripts/e2e/dockerd.sh --stop).
#
# Where the capability bounding set lacks CAP_SYS_RESOURCE (these machines), dockerd's default
# runtime becomes scripts/e2e/runc-nocap.sh, installed as /usr/local/sbin/runc-nocap: Debian's
# dockerd 20.10 asks for every capability for a privileged container, and kind's node
# containers are privileged.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "dockerd: $*" >&2; }
pidfile=/run/gregor-dockerd.pid

if [[ "${1:-}" == "--stop" ]]; then
  if [[ -s $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null; then
    for _ in $(seq 30); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 1; done
    log "stopped"
  fi
  rm -f "$pidfile"
  exit 0
fi

pkgs=()
command -v dockerd >/dev/null || pkgs+=(docker.io)
command -v debootstrap >/dev/null || pkgs+=(debootstrap)
command -v jq >/dev/null || pkgs+=(jq)
command -v iptables >/dev/null || pkgs+=(iptables)
[[ -x /usr/bin/busybox ]] || pkgs+=(busybox-static)
if (( ${#pkgs[@]} )); then
  [[ $EUID == 0 ]] || { log "need root to install ${pkgs[*]}"; exit 1; }
  log "apt-get install ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then exit 0; fi
[[ $EUID == 0 ]] || { log "no docker daemon answers, and starting one needs root"; exit 1; }

# CAP_SYS_RESOURCE is bit 24 of the bounding set.
bnd=$((16#$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)))
if (( (bnd >> 24 & 1) == 0 )); then
  install -m 0755 "$here/runc-nocap.sh" /usr/local/sbin/runc-nocap
  mkdir -p /etc/docker
  cat >/etc/docker/daemon.json <<'JSON'
{
  "runtimes": {"runc-nocap": {"path": "/usr/local/sbin/runc-nocap"}},
  "default-runtime": "runc-nocap"
}
JSON
  log "no CAP_SYS_RESOURCE in the bounding set: default runtime runc-nocap"
fi

log "starting dockerd (log: /var/log/gregor-dockerd.log)"
# fd 9 is closed for it: the scripts of the suite hold their locks on fd 9, and a daemon that
# inherited one would hold it for ever.
dockerd >/var/log/gregor-dockerd.log 2>&1 9>&- </dev/null &
echo $! >"$pidfile"
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && { echo started; exit 0; }
  kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -n 20 /var/log/gregor-dockerd.log >&2; log "dockerd exited"; exit 1; }
  sleep 1
done
log "dockerd did not answer within 60 s"; exit 1
