#!/bin/sh
# runc, minus CAP_SYS_RESOURCE: installed by scripts/e2e/dockerd.sh as dockerd's default
# runtime on machines whose capability bounding set lacks that capability.
#
# dockerd 20.10 (Debian 12) asks for every capability for a --privileged container (fixed
# upstream in moby PR 42933), and runc then fails with "unable to apply caps: operation not
# permitted" where the bounding set lacks one. kind's node containers are privileged. This
# removes the capability from the bundle's config.json (create, run) and from the process
# file (exec, which kind uses), then runs the real runc with the same arguments.
real=/usr/sbin/runc
strip() {
  [ -f "$1" ] || return 0
  jq '(.. | objects | select(has("bounding")) | .[]) |= (if type == "array" then map(select(. != "CAP_SYS_RESOURCE")) else . end)' \
    "$1" >"$1.nocap" && mv "$1.nocap" "$1"
}
cmd=""; bundle="."; process=""; prev=""
for a in "$@"; do
  case "$prev" in
    --bundle|-b) bundle="$a" ;;
    --process|-p) process="$a" ;;
  esac
  case "$a" in
    --bundle=*) bundle="${a#--bundle=}" ;;
    --process=*) process="${a#--process=}" ;;
  esac
  if [ -z "$cmd" ]; then
    case "$a" in create|run|exec) cmd="$a" ;; esac
  fi
  prev="$a"
done
case "$cmd" in
  create|run) strip "$bundle/config.json" ;;
  exec) [ -n "$process" ] && strip "$process" ;;
esac
exec "$real" "$@"
