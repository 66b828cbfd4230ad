"""What the Python benchmarks share: one Gregor or Apache Kafka node on free loopback ports,
started and stopped the same way, and readings of its process (RSS, CPU, descriptors) and of the
machine. Imported by bench/partitions.py and bench/latency.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GREGOR_BIN = Path(os.environ.get("GREGOR_BIN", ROOT / "target" / "release" / "gregor"))
KAFKA_HEAP = os.environ.get("BENCH_KAFKA_HEAP", "-Xms1G -Xmx1G")
KAFKA_SH = str(ROOT / "scripts" / "kafka.sh")
READY_TIMEOUT = 600
CLK_TCK = os.sysconf("SC_CLK_TCK")


VENV_PY = Path.home() / ".cache" / "gregor" / "venv" / "bin" / "python"


def use_test_venv():
    """Re-executes the running script with the test venv's python (confluent-kafka) unless this
    python already has confluent-kafka; call it before importing confluent_kafka."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        if VENV_PY.exists() and Path(sys.executable) != VENV_PY:
            os.execv(VENV_PY, [str(VENV_PY), *sys.argv])
        raise


def logger(name: str):
    """A `log(msg)` printing `[time] name: msg` to stderr."""
    def log(msg: str):
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {msg}", file=sys.stderr, flush=True)
    return log


def free_ports(n: int) -> list[int]:
    out = subprocess.run([str(ROOT / "scripts" / "free-port.py"), str(n)], check=True,
                         capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` (all its threads) so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def loadavg() -> str:
    return "/".join(open("/proc/loadavg").read().split()[:3])


def wait(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - not yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(interval)


def machine_env(work: Path) -> str:
    """The machine and version lines bench/lib.sh's machine_env prints (key=value)."""
    return subprocess.run(["bash", "-c", f"source {ROOT}/bench/lib.sh; work={work}; "
                           f"machine_env {GREGOR_BIN} {ROOT}"],
                          capture_output=True, text=True).stdout.strip()


class Gregor:
    """`gregor dev` on a fresh data dir in `work`, ready when /readyz answers."""
    name = "gregor"

    def __init__(self, work: Path, preexec=None):
        self.data = work / "data"
        self.port, self.mport = free_ports(2)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log_path = work / "gregor.log"
        self.preexec = preexec
        self.proc = None
        listener = f"PLAINTEXT://{self.bootstrap}"
        self.command = [str(GREGOR_BIN), "dev", "--data-dir", str(self.data),
                        "--override", f"listeners={listener}",
                        "--override", f"advertised.listeners={listener}",
                        "--override", f"metrics.listener=127.0.0.1:{self.mport}"]

    def start(self):
        self.proc = subprocess.Popen(self.command, stdout=open(self.log_path, "ab"),
                                     stderr=subprocess.STDOUT, preexec_fn=self.preexec)

        def ready():
            assert self.proc.poll() is None, "gregor exited"
            with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/readyz", timeout=2) as r:
                return r.status == 200
        wait(ready, READY_TIMEOUT, "gregor ready")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Kafka:
    """A KRaft single node (broker and controller in one JVM) by scripts/kafka-single-node.sh."""
    name = "kafka"

    def __init__(self, work: Path, preexec=None):
        self.dir = work / "node"
        self.script = str(ROOT / "scripts" / "kafka-single-node.sh")
        self.preexec = preexec
        self.bootstrap = ""
        self.command = ["env", f"KAFKA_HEAP_OPTS={KAFKA_HEAP}", self.script, "start",
                        str(self.dir)]

    def start(self):
        env = dict(os.environ, KAFKA_HEAP_OPTS=KAFKA_HEAP, KAFKA_READY_TIMEOUT=str(READY_TIMEOUT))
        out = subprocess.run([self.script, "start", str(self.dir)], check=True, env=env,
                             capture_output=True, text=True, preexec_fn=self.preexec)
        self.bootstrap = out.stdout.strip().splitlines()[-1]

    @property
    def pid(self) -> int:
        return int((self.dir / "kafka.pid").read_text())

    def stop(self):
        subprocess.run([self.script, "stop", str(self.dir)], check=True, capture_output=True)

    def kill(self):
        subprocess.run([self.script, "kill", str(self.dir)], capture_output=True)


def broker(kind: str, work: Path, preexec=None):
    return Gregor(work, preexec) if kind == "gregor" else Kafka(work, preexec)
