"""The operator's Grafana dashboard and alert rule, evaluated by a real Prometheus scraping a
running gregor-operator. scripts/helm-check.sh starts it beside the operator it runs as the
chart's ServiceAccount against a real kube-apiserver.

    operator-dashboard-check.py TARGET WORKDIR SCRAPING_FILE GO_FILE

Starts Debian's Prometheus (tests/python/prometheus.py) scraping TARGET (the operator's
host:port) every second with the chart's rule file, writes SCRAPING_FILE once the target is
up (helm-check waits for it before it creates any resource, so Prometheus sees every
reconcile), and waits for GO_FILE, which helm-check writes once the operator has reconciled a
KafkaCluster, a KafkaTopic and a KafkaUser. Then,
within 60 s, every panel expression of charts/gregor/dashboards/gregor-operator.json must
return data and the operator's alert rule must have been evaluated by Prometheus without
error; a few panels must show what that run did (one leader, one KafkaCluster of one node, its
CAs valid for months, every reconcile-failure series present). The one panel of a series only a
rolling restart makes (UNTIL_A_ROLL) must evaluate to nothing, for want of that series. Prints each panel with what it
showed; exits 1 naming what did not hold, and with GO_FILE absent after 300 s.

Without `prometheus` it says so and exits 0, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))

from conftest import wait_for  # noqa: E402
from prometheus import RULES, Prometheus, dashboard_exprs  # noqa: E402

ALERT = "GregorOperatorReconcileFailures"
# Failed-reconcile series exist from the start: 3 kinds x 3 categories.
FAILURE_SERIES = 9


def value(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def rate(samples: list[dict], /, **labels: str) -> float:
    """The value of the one series of `samples` with `labels` (NaN counts as 0)."""
    (sample,) = [s for s in samples if labels.items() <= s["metric"].items()]
    v = float(sample["value"][1])
    return 0.0 if v != v else v


def expectations() -> dict[tuple[str, int], callable]:
    """(panel title, which target of that title) -> a check of its result, for the run
    helm-check makes."""
    return {
        ("Leading replicas", 0): lambda r: value(r) == 1,
        ("KafkaClusters", 0): lambda r: value(r) == 1,
        # The operator's CA certificates are valid for a year at least.
        ("Soonest CA expiry", 0): lambda r: value(r) > 300,
        ("Reconciles by resource and result", 0):
            lambda r: rate(r, resource="KafkaTopic", result="ok") > 0,
        ("Reconcile failures by category", 0): lambda r: len(r) == FAILURE_SERIES,
        ("Reconcile duration p99", 0): lambda r: rate(r, resource="KafkaTopic") > 0,
        ("Brokers ready / desired", 1): lambda r: value(r) == 1,
        ("Time since last successful reconcile", 0): lambda r: 0 <= value(r) < 300,
        # No kubelet runs here: the KafkaCluster's broker pod never becomes ready.
        ("Resources not ready", 0): lambda r: value(r) == 1,
        ("Resources not ready", 1):
            lambda r: [s["metric"].get("kind") for s in r] == ["KafkaCluster"],
    }


# Panels of series that no run of helm-check can make (there is no kubelet, so no roll): their
# expression must evaluate, and be empty only because the series does not exist yet.
# tests/e2e's rolling-restart scenario checks the operator exports it after a roll.
UNTIL_A_ROLL = {"Under-replicated partitions (operator's view)":
                "gregor_operator_under_replicated_partitions"}


def alert_evaluated(prom: Prometheus) -> bool:
    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    rule = next(r for r in rules if r.get("name") == ALERT)
    assert rule["health"] == "ok", rule
    return not rule["lastEvaluation"].startswith("0001")


def main() -> int:
    target, workdir = sys.argv[1], Path(sys.argv[2])
    scraping_file, go_file = Path(sys.argv[3]), Path(sys.argv[4])
    if not shutil.which("prometheus"):
        print("prometheus not found: apt-get install prometheus", file=sys.stderr)
        return 1 if os.environ.get("CI") == "true" else 0
    exprs = []  # (title, which target of that title, expr)
    for _, title, expr in dashboard_exprs({"gregor-operator"}):
        exprs.append((title, sum(1 for t, _, _ in exprs if t == title), expr))
    checks = expectations()
    assert set(checks) <= {(t, n) for t, n, _ in exprs}, "a checked panel left the dashboard"
    with Prometheus(workdir, rules=[RULES], targets=[target], cluster_name="helm-check") as prom:
        prom.wait_targets_up(1)
        scraping_file.touch()
        deadline = time.monotonic() + 300
        while not go_file.exists():
            if time.monotonic() > deadline:
                print(f"{go_file} never came", file=sys.stderr)
                return 1
            time.sleep(0.2)
        failing: list[str] = []
        shown: dict[str, str] = {}

        def all_hold() -> bool:
            failing.clear()
            for title, n, expr in exprs:
                result = prom.query(expr)
                shown[f"{title} [{n}]"] = ", ".join(
                    f"{s['metric']} {s['value'][1]}" for s in result[:3])
                if not result and title in UNTIL_A_ROLL:
                    if not prom.query(f"absent({UNTIL_A_ROLL[title]})"):
                        failing.append(f"{title}: no data from {expr}, yet the series exists")
                elif not result:
                    failing.append(f"{title}: no data from {expr}")
                elif (title, n) in checks and not checks[(title, n)](result):
                    failing.append(f"{title}: {result}")
            if not alert_evaluated(prom):
                failing.append(f"{ALERT} not evaluated yet")
            return not failing

        try:
            wait_for(all_hold, 60, "every operator panel shows data", interval=1)
        except TimeoutError as e:
            print(f"operator dashboard check failed: {e}\n  " + "\n  ".join(failing),
                  file=sys.stderr)
            print(prom.log()[-2000:], file=sys.stderr)
            return 1
        for title, text in shown.items():
            print(f"  {title}: {text}")
        print(f"{len(exprs)} operator panel expressions returned data; {ALERT} evaluated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
