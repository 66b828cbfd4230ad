#!/bin/sh
# iptables, ip6tables and their -save/-restore in the kube-proxy image all start as links to this
# script. At first use it picks the backend the node already uses (legacy or nft: whichever holds
# more rules; nft when neither does), points Debian's alternatives at it, and runs the command
# again, now the real one. Mixing the two backends on one node splits the rules in two tables.
legacy=$( (iptables-legacy-save || true; ip6tables-legacy-save || true) 2>/dev/null | grep -c '^-' || true)
nft=$( (timeout 5 sh -c 'iptables-nft-save; ip6tables-nft-save' || true) 2>/dev/null | grep -c '^-' || true)
mode=nft
[ "${legacy:-0}" -gt "${nft:-0}" ] && mode=legacy
update-alternatives --set iptables "/usr/sbin/iptables-$mode" >/dev/null
update-alternatives --set ip6tables "/usr/sbin/ip6tables-$mode" >/dev/null
# Still a link to this script: stop rather than loop.
case "$(readlink -f "$0")" in */iptables-wrapper) echo "iptables-wrapper: could not select $mode" >&2; exit 1 ;; esac
exec "$0" "$@"
