"""The end-to-end scenarios run only under scripts/e2e.sh, which makes the kind cluster and
installs the operator (E2E_CLUSTER set); elsewhere they are skipped with the reason.

Each scenario records what it measured through the `figures` fixture; at the end the summary
table (scenario, result, figures) is printed and written to E2E_RESULTS as JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

_rows: dict[str, dict] = {}


def pytest_collection_modifyitems(config, items):
    if os.environ.get("E2E_CLUSTER"):
        return
    skip = pytest.mark.skip(reason="needs the kind cluster of scripts/e2e.sh (E2E_CLUSTER unset)")
    for item in items:
        item.add_marker(skip)


@pytest.fixture
def figures(request) -> dict:
    """What a scenario measured, shown in the summary table."""
    row = _rows.setdefault(request.node.nodeid, {"scenario": _title(request.node), "figures": {}})
    return row["figures"]


def _title(item) -> str:
    doc = (item.function.__doc__ or item.name).strip().splitlines()[0]
    return doc.rstrip(".")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        row = _rows.setdefault(item.nodeid, {"scenario": _title(item), "figures": {}})
        row["result"] = {"passed": "pass", "failed": "FAIL", "skipped": "skipped"}[report.outcome]


def pytest_terminal_summary(terminalreporter):
    if not _rows:
        return
    rows = list(_rows.values())
    tr = terminalreporter
    tr.section("end-to-end scenarios on kind")
    width = max(len(r["scenario"]) for r in rows)
    tr.write_line(f"{'scenario':<{width}}  result  figures")
    for r in rows:
        figs = ", ".join(f"{k}={v}" for k, v in r["figures"].items())
        tr.write_line(f"{r['scenario']:<{width}}  {r.get('result', '?'):<6}  {figs}")
    out = os.environ.get("E2E_RESULTS")
    if out:
        Path(out).write_text(json.dumps(rows, indent=2))
