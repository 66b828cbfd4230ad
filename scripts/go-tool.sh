#!/usr/bin/env bash
# Prints the path of a tool built with Go at a pinned version (helm, kind): NAME from the PATH
# when `NAME version` names VERSION, else built once with `go install PACKAGE@VERSION` into
# ~/.cache/gregor/bin/NAME-VERSION (progress on stderr).
#
# Args: NAME PACKAGE VERSION. Env: GREGOR_CACHE (default ~/.cache/gregor).
set -euo pipefail
name="$1" package="$2" version="$3"
if command -v "$name" >/dev/null && [[ "$("$name" version 2>/dev/null)" == *"$version"* ]]; then
  command -v "$name"
  exit 0
fi
dir="${GREGOR_CACHE:-$HOME/.cache/gregor}/bin/$name-$version"
if [[ ! -x "$dir/$name" ]]; then
  command -v go >/dev/null || { echo "go-tool: neither $name $version nor go found" >&2; exit 1; }
  echo "go-tool: go install $package@$version (once; into $dir)" >&2
  GOBIN="$dir" go install "$package@$version" >&2
fi
echo "$dir/$name"
