"""A real Prometheus (Debian's `prometheus` package) scraping a Gregor cluster for the
observability tests, and promtool.

`Prometheus` writes a config scraping each node's /metrics every second (every series labelled
`gregor_cluster`, as the operator's ServiceMonitor labels them) and evaluating the chart's
alert rules every second, starts `prometheus` on a free loopback port with its own TSDB dir, and
queries it through the HTTP API (`query`, `query_range`, `alerts`, `targets`).

    with Prometheus(tmp_path, cluster, rules=[shortened_rules(tmp_path, "3s")]) as prom:
        prom.wait_targets_up(3)
        prom.query("sum(gregor_active_controller)")   # [{"metric": {...}, "value": [t, "1"]}]

Under CI=true a missing binary fails the test; elsewhere it skips, naming the package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import GiveUp, free_ports, wait_for

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "gregor" / "rules" / "gregor.rules.yaml"
CLUSTER_LABEL = "gregor_cluster"


def tool(name: str) -> str:
    """The path of `name` (prometheus, promtool) from Debian's prometheus package."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} not found: apt-get install prometheus (Debian's package ships both)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def shortened_rules(workdir: Path, hold: str) -> Path:
    """The chart's rule file with every alert's `for` set to `hold`, so a test sees an alert go
    pending and then firing within seconds."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = hold
    out = Path(workdir) / "rules.yaml"
    out.write_text(yaml.safe_dump(rules, sort_keys=False))
    return out


class Prometheus:
    def __init__(self, workdir: Path, cluster=None, rules: list[Path] = (),
                 cluster_name: str = "test", targets: list[str] = ()):
        """Scrapes every node of `cluster`, or else `targets` (host:port of /metrics)."""
        self.workdir = Path(workdir) / "prometheus"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = tool("prometheus")
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.workdir / "prometheus.log"
        if cluster is not None:
            targets = [f"{n.host}:{n.metrics_port}" for n in cluster.nodes.values()]
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms",
                       "evaluation_interval": "1s"},
            "rule_files": [str(r) for r in rules],
            "scrape_configs": [{
                "job_name": "gregor",
                "static_configs": [{"targets": list(targets), "labels": {CLUSTER_LABEL: cluster_name}}],
            }],
        }
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen | None = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.config_path}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT)

        def ready():
            if self.proc.poll() is not None:
                raise GiveUp(f"prometheus exited {self.proc.returncode}:\n{self.log()}")
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                return r.status == 200

        wait_for(ready, 30, "prometheus ready")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the HTTP API --------------------------------------------------------------------

    def api(self, path: str, **params) -> dict | list:
        """GET /api/v1/<path>: its `data`; an error answer raises with Prometheus' message."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant vector query's samples."""
        data = self.api("query", query=expr)
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The single sample of `expr`, or None when it has none."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr}: {result}"
        return float(result[0]["value"][1]) if result else None

    def query_range(self, expr: str, start: float, end: float, step: str = "1s") -> list[dict]:
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]

    def alerts(self, name: str | None = None) -> list[dict]:
        """The active (pending or firing) alerts, of rule `name` only if given."""
        alerts = self.api("alerts")["alerts"]
        return [a for a in alerts if name is None or a["labels"]["alertname"] == name]

    def targets_up(self) -> int:
        active = self.api("targets")["activeTargets"]
        return sum(1 for t in active if t["health"] == "up")

    def wait_targets_up(self, n: int, timeout: float = 30):
        wait_for(lambda: self.targets_up() == n, timeout, f"{n} targets up")


DASHBOARDS = RULES.parents[1] / "dashboards"


def dashboard_exprs(stems: set[str]) -> list[tuple[str, str, str]]:
    """(dashboard, panel title, expr) of every panel target of the dashboards named in `stems`
    (file names without .json), Grafana's variables replaced as a user who picks every value
    would have them."""

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    out = []
    for stem in sorted(stems):
        for panel in panels(json.loads((DASHBOARDS / f"{stem}.json").read_text())["panels"]):
            for target in panel.get("targets", []):
                expr = (target["expr"].replace("$gregor_cluster", "test")
                        .replace("$__rate_interval", "1m"))
                expr = re.sub(r'=~"\$[a-z_]+"', '=~".*"', expr)
                assert "$" not in expr, expr
                out.append((stem, panel["title"], expr))
    return out
