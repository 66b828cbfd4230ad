"""kubectl and helm as the scenarios use them: JSON in and out, every wait a condition with a
deadline and a message saying what was awaited, never a bare sleep.

The kubectl, helm and KUBECONFIG of scripts/e2e.sh are on PATH and in the environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any, Callable, TypeVar

T = TypeVar("T")

KAFKA_NS = "kafka"
OPERATOR_NS = os.environ.get("E2E_OPERATOR_NAMESPACE", "gregor-system")
RELEASE = os.environ.get("E2E_RELEASE", "gregor")


class Timeout(AssertionError):
    """A wait ran out; says what it waited for and what it saw last."""


def run(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
    """Runs a command and returns its stdout; a failure raises with its stderr."""
    p = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def kubectl(*args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
    return run("kubectl", *args, stdin=stdin, check=check, timeout=timeout)


def get(kind: str, name: str | None = None, ns: str | None = KAFKA_NS,
        selector: str | None = None) -> Any:
    """The object (or the list's items) as JSON; None when a named object does not exist."""
    args = ["get", kind]
    if name:
        args.append(name)
    if ns:
        args += ["-n", ns]
    if selector:
        args += ["-l", selector]
    args += ["-o", "json", "--ignore-not-found"]
    out = kubectl(*args)
    if not out.strip():
        return None if name else []
    obj = json.loads(out)
    return obj if name else obj.get("items", [])


def apply(obj: dict, ns: str | None = KAFKA_NS) -> None:
    args = ["apply", "--server-side", "--field-manager=e2e", "--force-conflicts", "-f", "-"]
    if ns:
        args += ["-n", ns]
    kubectl(*args, stdin=json.dumps(obj))


def patch(kind: str, name: str, body: dict, ns: str = KAFKA_NS) -> None:
    kubectl("patch", kind, name, "-n", ns, "--type=merge", "-p", json.dumps(body))


def delete(kind: str, name: str, ns: str | None = KAFKA_NS, *extra: str) -> None:
    args = ["delete", kind, name, "--ignore-not-found", *extra]
    if ns:
        args += ["-n", ns]
    kubectl(*args, timeout=300)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float,
             interval: float = 1.0) -> T:
    """Calls `probe` until it returns something truthy, which is returned; raises Timeout,
    naming `what`, after `timeout` seconds. A probe that raises is retried (the API server or
    a broker may be briefly unreachable while things restart) and its last error reported."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - reported if the wait runs out
            last = e
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def condition(obj: dict | None, kind: str) -> dict:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return {}


def pod_ready(pod: dict) -> bool:
    return condition(pod, "Ready").get("status") == "True" and not pod["metadata"].get(
        "deletionTimestamp")


def pods(selector: str, ns: str = KAFKA_NS) -> list[dict]:
    return sorted(get("pods", ns=ns, selector=selector), key=lambda p: p["metadata"]["name"])


def logs(pod: str, ns: str = KAFKA_NS, container: str | None = None) -> str:
    args = ["logs", pod, "-n", ns]
    if container:
        args += ["-c", container]
    return kubectl(*args, timeout=60)


def cluster_ready(name: str, replicas: int) -> dict | None:
    """The KafkaCluster once Ready for its current generation with `replicas` ready nodes,
    every one running the current spec."""
    kc = get("kafkacluster", name)
    if not kc:
        return None
    status = kc.get("status") or {}
    ok = (condition(kc, "Ready").get("status") == "True"
          and status.get("observedGeneration") == kc["metadata"]["generation"]
          and status.get("readyReplicas") == replicas
          and all(b.get("ready") and b.get("current") for b in status.get("brokers", [])))
    return kc if ok else None


def helm(*args: str, timeout: float = 600) -> str:
    return run("helm", *args, timeout=timeout)


def operator_metrics(pod: str) -> str:
    """An operator pod's /metrics, through the API server's pod proxy."""
    return kubectl("get", "--raw",
                   f"/api/v1/namespaces/{OPERATOR_NS}/pods/{pod}:8080/proxy/metrics")


def metric(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one series of a Prometheus text exposition; None when absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        if series == name and not labels:
            return float(value)
        if series.startswith(name + "{") and labels and all(
                f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return None
