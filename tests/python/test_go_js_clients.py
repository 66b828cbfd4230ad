"""franz-go (Go) and kafkajs (Node) against the broker.

tests/go is a Go module pinning franz-go v1.22.2 and kadm v1.19.0 with one program, clientcheck;
tests/js pins kafkajs 2.2.4 with one script, check.js. Each creates a 6-partition topic, produces
1,000 keyed records idempotently (franz-go: lz4, zstd, snappy and gzip; kafkajs: gzip), consumes
them in a consumer group checking exactly-once arrival and per-key order, commits, checks that a
second member of the group finds nothing left, and looks at the group with the admin client. They
exit non-zero with a `FAIL:` line on any mismatch; their whole output is shown on a failure.

The Go program is built once per session into a temporary directory by conftest.py's
`clientcheck` fixture (the default Go build and module caches make later builds fast); `npm ci`
runs once per session in a temporary copy of tests/js. Tests skip when `go` or `node`/`npm` is
not installed. CLIENTCHECK_DEBUG=1 in the environment turns on the clients' debug logs.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import GO_DIR, REPO_ROOT, describe, find_tool, run_logged

JS_DIR = REPO_ROOT / "tests" / "js"
RUN_TIMEOUT = 240  # the programs bound themselves at 150 s


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
