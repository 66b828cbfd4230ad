"""franz-go (Go) and kafkajs (Node) against the broker.

tests/go is a Go module pinning franz-go v1.22.2 and kadm v1.19.0 with one program, clientcheck;
tests/js pins kafkajs 2.2.4 with one script, check.js. Each creates a 6-partition topic, produces
1,000 keyed records idempotently (franz-go: lz4, zstd, snappy and gzip; kafkajs: gzip), consumes
them in a consumer group checking exactly-once arrival and per-key order, commits, checks that a
second member of the group finds nothing left, and looks at the group with the admin client. They
exit non-zero with a `FAIL:` line on any mismatch; their whole output is shown on a failure.

The Go program is built once per session into a temporary directory (the default Go build and
module caches make later builds fast); `npm ci` runs once per session in a temporary copy of
tests/js. Tests skip when `go` or `node`/`npm` is not installed. CLIENTCHECK_DEBUG=1 in the
environment turns on the clients' debug logs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT

GO_DIR = REPO_ROOT / "tests" / "go"
JS_DIR = REPO_ROOT / "tests" / "js"
RUN_TIMEOUT = 240  # the programs bound themselves at 150 s


def find_tool(name: str, *fallbacks: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for f in fallbacks:
        if os.access(f, os.X_OK):
            return f
    return None


def run_logged(cmd: list[str], cwd: Path, timeout: float, what: str, env=None):
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    took = time.monotonic() - t0
    print(f"{what}: exit {r.returncode} in {took:.1f}s")
    return r, took


def describe(r: subprocess.CompletedProcess) -> str:
    return (f"exit code {r.returncode}\n--- stdout ---\n{r.stdout[-20000:]}"
            f"\n--- stderr ---\n{r.stderr[-30000:]}")


@pytest.fixture(scope="session")
def clientcheck(tmp_path_factory) -> str:
    """Path of the built tests/go program."""
    go = find_tool("go", "/usr/local/go/bin/go")
    if go is None:
        pytest.skip("go is not installed: the franz-go check needs it")
    out = tmp_path_factory.mktemp("go-bin") / "clientcheck"
    r, _ = run_logged([go, "build", "-buildvcs=false", "-o", str(out), "."], GO_DIR, 600,
                      "go build clientcheck")
    if r.returncode != 0:
        pytest.fail(f"go build in {GO_DIR} failed:\n{describe(r)}")
    return str(out)


@pytest.fixture(scope="session")
def kafkajs_check(tmp_path_factory) -> list[str]:
    """Command prefix that runs tests/js/check.js with its dependencies installed by npm ci."""
    node = find_tool("node")
    npm = find_tool("npm")
    if node is None or npm is None:
        pytest.skip("node/npm is not installed: the kafkajs check needs them")
    work = tmp_path_factory.mktemp("js")
    for name in ("package.json", "package-lock.json", "check.js"):
        shutil.copy2(JS_DIR / name, work / name)
    r, _ = run_logged([npm, "ci", "--no-audit", "--no-fund"], work, 600, "npm ci")
    if r.returncode != 0:
        pytest.fail(f"npm ci (copy of {JS_DIR} in {work}) failed:\n{describe(r)}")
    return [node, str(work / "check.js")]


def test_franz_go_produce_consume_group(clientcheck, bootstrap, topic_name):
    r, _ = run_logged([clientcheck, "produce-consume", bootstrap, topic_name], GO_DIR,
                      RUN_TIMEOUT, "clientcheck produce-consume")
    if r.returncode != 0:
        v = subprocess.run([clientcheck, "versions", bootstrap], capture_output=True, text=True,
                           timeout=60)
        pytest.fail(f"franz-go clientcheck produce-consume {bootstrap} {topic_name}: "
                    f"{describe(r)}\n--- API versions (clientcheck versions) ---\n"
                    f"{v.stdout}{v.stderr[-3000:]}")


def test_kafkajs_produce_consume_group(kafkajs_check, bootstrap, topic_name):
    r, _ = run_logged([*kafkajs_check, bootstrap, topic_name], JS_DIR, RUN_TIMEOUT,
                      "node check.js")
    if r.returncode != 0:
        pytest.fail(f"kafkajs check.js {bootstrap} {topic_name}: {describe(r)}")
