#!/usr/bin/env bash
# The project's single test command: formatting, lints, docs, unit tests, release build, the Helm
# chart check, the end-to-end pytest suite (tests/python) against the freshly built
# target/release/gregor, then the image on a kind cluster (scripts/e2e.sh, tests/e2e).
#
# Env: CARGO_TARGET_DIR (default ./target), GREGOR_KUBE_BIN (kube-apiserver and etcd for the
# operator's tests; default: what scripts/kube-dist.sh prints, building it on first use),
# GREGOR_PYTHON (default the venv made by .ci/run,
# ~/.cache/gregor/venv, else python3), GREGOR_TEST_BROKER / KAFKA_BOOTSTRAP (see
# tests/python/conftest.py), PYTEST_ARGS (extra pytest arguments, e.g. "-x -k seed"),
# GREGOR_E2E=0 (skip the kind suite).
# Args: --e2e-only skips the cargo steps but the release build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

e2e_only=0
[[ "${1:-}" == "--e2e-only" ]] && e2e_only=1

py="${GREGOR_PYTHON:-$HOME/.cache/gregor/venv/bin/python}"
[[ -x "$py" ]] || py=python3

t0=$(date +%s)
step() { echo; echo "==> [$(( $(date +%s) - t0 ))s] $*"; }

if [[ $e2e_only == 0 ]]; then
  step "cargo fmt --all --check"
  cargo fmt --all --check
  step "cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
  step "cargo doc --no-deps --workspace (rustdoc warnings are errors)"
  RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --no-deps --workspace
  step "crdgen --check (the committed CRDs match the Rust types)"
  cargo run -q -p gregor-operator --bin crdgen -- --check
  step "scripts/kube-dist.sh (kube-apiserver and etcd for the operator's tests)"
  export GREGOR_KUBE_BIN="${GREGOR_KUBE_BIN:-$(scripts/kube-dist.sh)}"
  step "cargo test --workspace"
  cargo test --workspace
fi
if [[ $e2e_only == 0 ]] && command -v cargo-fuzz >/dev/null; then
  # 30 s of coverage-guided fuzzing of request decoding. -malloc_limit_mb reports any single
  # allocation over 256 MiB as a failure: that is the kafka-protocol pre-allocation defect.
  step "cargo fuzz run decode_request (30 s)"
  # The fuzz crate is its own workspace with its own lock file; refuse a stale one instead of
  # letting each run rewrite it.
  (cd fuzz && cargo metadata --locked --format-version 1 >/dev/null) || {
    echo "fuzz/Cargo.lock is stale: run 'cargo metadata --format-version 1 >/dev/null' in fuzz/ and commit it" >&2
    exit 1
  }
  # The same sources (by git's blob hashes) that already passed here are not fuzzed again:
  # the build is most of the step. It is a dev build (--dev: debug assertions on, no
  # optimisation): about 3 minutes from a cold cache where the release build took 17, and
  # still some 15,000 runs a second.
  fuzz_stamp="$(git ls-files -s broker client fuzz vendor Cargo.toml Cargo.lock 2>/dev/null |
    sha256sum | cut -c1-16)"
  fuzz_passed="$HOME/.cache/gregor/fuzz-passed"
  if [[ -n "$fuzz_stamp" && "$(cat "$fuzz_passed" 2>/dev/null)" == "$fuzz_stamp" ]]; then
    echo "skipped: these sources ($fuzz_stamp) passed the fuzzing before"
  else
    (cd fuzz && CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$CARGO_TARGET_DIR/fuzz}" \
      cargo fuzz run --dev --sanitizer none decode_request corpus/decode_request -- \
      -max_total_time=30 -rss_limit_mb=1024 -malloc_limit_mb=256 -print_final_stats=1 2>&1 |
      tail -n 12; exit "${PIPESTATUS[0]}")
    mkdir -p "$(dirname "$fuzz_passed")" && echo "$fuzz_stamp" >"$fuzz_passed"
  fi
fi
step "cargo build --release -p gregor"
cargo build --release -p gregor
if [[ $e2e_only == 0 ]]; then
  # Lint and render the chart, then install it into a real API server and run the operator as
  # its ServiceAccount. (The container image is not built here: scripts/docker-build.sh.)
  step "scripts/helm-check.sh (the Helm chart)"
  scripts/helm-check.sh
fi

if [[ -n "${GREGOR_E2E_PREPARE_RC:-}" ]]; then
  # .ci/run builds the kind suite's images in the background; nothing may compete with the
  # timed tests from here on.
  step "waiting for scripts/e2e/prepare.sh (the kind suite's images, built in the background)"
  while [[ ! -s "$GREGOR_E2E_PREPARE_RC" ]]; do sleep 2; done
  if [[ "$(cat "$GREGOR_E2E_PREPARE_RC")" != 0 ]]; then
    echo "prepare.sh failed (scripts/e2e.sh retries it); its log ends:"
    tail -n 20 "${GREGOR_E2E_PREPARE_LOG:-/dev/null}"
  fi
fi

# The suites mostly wait (on brokers, timeouts and clients), so they run in parallel:
# pytest-xdist workers (GREGOR_PYTEST_WORKERS, default 3; 0 runs them in this process), each
# taking whole files (--dist loadfile: a file's fixtures stay in one worker) and ports from a
# range of its own (tests/python/conftest.py free_ports).
workers="${GREGOR_PYTEST_WORKERS:-3}"
xdist=()
if [[ "$workers" != 0 ]]; then xdist=(-n "$workers" --dist loadfile); fi

step "pytest tests/python (${workers} workers)"
export GREGOR_BIN="${GREGOR_BIN:-$CARGO_TARGET_DIR/release/gregor}"
# shellcheck disable=SC2086
"$py" -m pytest tests/python "${xdist[@]}" ${PYTEST_ARGS:-}

step "pytest test_gregor_tools.py, test_acls.py, test_admin_apis.py, test_static_members.py, test_transactions.py, test_transaction_version.py, test_eos_java.py, test_eos_clients.py, test_consumer_protocol.py, test_mixed_groups.py and test_share_groups.py against Apache Kafka (the same assertions hold there)"
if command -v java >/dev/null && [[ "${GREGOR_JAVA_TESTS:-1}" != "0" ]]; then
  # shellcheck disable=SC2086
  GREGOR_TEST_BROKER=kafka "$py" -m pytest "${xdist[@]}" tests/python/test_gregor_tools.py \
    tests/python/test_acls.py tests/python/test_admin_apis.py \
    tests/python/test_static_members.py tests/python/test_transactions.py \
    tests/python/test_transaction_version.py tests/python/test_eos_java.py \
    tests/python/test_eos_clients.py tests/python/test_consumer_protocol.py \
    tests/python/test_mixed_groups.py tests/python/test_share_groups.py ${PYTEST_ARGS:-}
else
  echo "skipped: no java"
fi

# Last: the image on a kind cluster, helm install, the scenarios of tests/e2e under load; its
# summary table closes the run. GREGOR_E2E=0 skips it (say, on a machine without root).
if [[ "${GREGOR_E2E:-1}" != "0" ]]; then
  step "scripts/e2e.sh (Gregor on a kind cluster: tests/e2e)"
  GREGOR_PYTHON="$py" scripts/e2e.sh
else
  step "scripts/e2e.sh skipped (GREGOR_E2E=0)"
fi

