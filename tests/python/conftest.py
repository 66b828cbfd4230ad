"""Fixtures for the Gregor end-to-end suite.

By default the suite starts the `gregor` binary itself (env GREGOR_BIN, else
target/release/gregor, else target/debug/gregor under the repo root) on free loopback ports
and a temporary data dir, waits until its Kafka port accepts and /readyz answers 200, and
stops it at the end of the session.

Other brokers, to check the tests themselves against the real thing:
  KAFKA_BOOTSTRAP=host:port   use an already running broker (restart/kill tests are skipped)
  GREGOR_TEST_BROKER=kafka    start a single-node Apache Kafka (scripts/kafka-single-node.sh),
                              which supports restart and kill -9 like Gregor does
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
GO_DIR = REPO_ROOT / "tests" / "go"
READY_TIMEOUT = float(os.environ.get("GREGOR_READY_TIMEOUT", "60"))


# Ports for brokers come from below Linux's ephemeral range (32768-60999), so that no client's
# outgoing connection takes one between its choice and the broker's bind, and, under
# pytest-xdist, from a slice of its own per worker (scripts/free-port.py takes ports from the
# slices above these, for the Kafka nodes the tests start).
PORTS_BASE, PORTS_PER_WORKER, WORKERS = 20000, 875, 8
_next_port = 0


def worker_index() -> int:
    """This pytest-xdist worker's number (gw0 is 0), or 0 without xdist."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) % WORKERS if name[2:].isdigit() else 0


def free_ports(n: int) -> list[int]:
    """`n` distinct ports of this worker's slice that nothing listens on now."""
    global _next_port
    base = PORTS_BASE + worker_index() * PORTS_PER_WORKER
    ports: list[int] = []
    for _ in range(PORTS_PER_WORKER):
        if len(ports) == n:
            break
        port = base + _next_port
        _next_port = (_next_port + 1) % PORTS_PER_WORKER
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    if len(ports) < n:
        raise RuntimeError(f"no {n} free ports in {base}-{base + PORTS_PER_WORKER - 1}")
    return ports


class GiveUp(Exception):
    """Raised by a `wait_for` predicate when waiting longer cannot help (a process exited)."""


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    """Poll `predicate` until it returns a truthy value; fail with `what` after `timeout` s.
    Exceptions count as "not yet" and are reported on timeout, except GiveUp, which ends the
    wait at once."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except GiveUp:
            raise
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(interval)


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Broker:
    """A broker the tests talk to. `bootstrap` is host:port."""

    name = "broker"
    can_restart = False
    bootstrap: str

    def start(self):
        pass

    def stop(self):
        pass

    def kill(self):
        """SIGKILL the broker process (no clean shutdown)."""
        raise NotImplementedError

    def restart(self, hard: bool = False):
        """Stop (SIGKILL when hard) and start again on the same data dir and ports."""
        if hard:
            self.kill()
        else:
            self.stop()
        self.start()

    def log_tail(self) -> str:
        return ""


class ExternalBroker(Broker):
    name = "external"

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap


class GregorBroker(Broker):
    name = "gregor"
    can_restart = True
    # The address its Kafka and metrics listeners bind, where readiness is probed.
    host = "127.0.0.1"
    # Whether it has a Kafka listener to probe (a controller-only node has none).
    serves_clients = True
    # Run in the child before exec (say, to set its resource limits); set on an instance.
    preexec_fn = None

    def __init__(self, binary: Path, workdir: Path, extra_props: dict[str, str] | None = None,
                 extra_args: list[str] | None = None):
        self.binary = binary
        self.extra_props = dict(extra_props or {})
        # Appended to the `gregor dev` command line as given (e.g. --add-scram ...).
        self.extra_args = list(extra_args or [])
        self.data_dir = workdir / "data"
        self.log_path = workdir / "gregor.log"
        self.port, self.metrics_port = free_ports(2)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        listener = f"PLAINTEXT://127.0.0.1:{self.port}"
        extra = [arg for k, v in self.extra_props.items() for arg in ("--override", f"{k}={v}")]
        return [
            str(self.binary), "dev",
            "--data-dir", str(self.data_dir),
            "--override", f"listeners={listener}",
            "--override", f"advertised.listeners={listener}",
            "--override", f"metrics.listener=127.0.0.1:{self.metrics_port}",
        ] + extra + self.extra_args

    def start(self):
        self.launch()
        self.wait_ready()

    def launch(self):
        """Spawn the process without waiting for it: the members of a multi-voter quorum only
        become ready once enough of them run, so a cluster launches all before waiting."""
        assert self.proc is None or self.proc.poll() is not None, "gregor already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n=== starting: {' '.join(self.command())}\n".encode())
        log.flush()
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            preexec_fn=self.preexec_fn,
        )
        log.close()

    def wait_ready(self, timeout: float = READY_TIMEOUT):
        """Wait until the Kafka port accepts and /readyz answers 200; SIGKILL it on failure."""
        try:
            wait_for(self._ready, timeout, f"gregor on {self.bootstrap} to be ready")
        except Exception as e:
            self.kill()
            raise RuntimeError(f"{e}\n--- {self.log_path} ---\n{self.log_tail()}") from None

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            # wait_ready adds the log tail.
            raise GiveUp(f"gregor exited with code {self.proc.returncode}")
        if self.serves_clients and not port_accepts(self.port, self.host):
            return False
        url = f"http://{self.host}:{self.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _signal_and_wait(self, sig, timeout) -> int | None:
        """Send `sig` unless the process has already exited, reap it (SIGKILL after `timeout`
        s) and return its exit code (a signal death is minus the signal number); None when it
        was never started."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode

    def stop(self) -> int | None:
        return self._signal_and_wait(signal.SIGTERM, 30)

    def kill(self) -> int | None:
        return self._signal_and_wait(signal.SIGKILL, 30)

    def log_tail(self) -> str:
        return tail(self.log_path)


class KafkaBroker(Broker):
    """Apache Kafka in KRaft single-node mode via scripts/kafka-single-node.sh."""

    name = "kafka"
    can_restart = True

    def __init__(self, workdir: Path, extra_props: dict[str, str] | None = None):
        self.dir = workdir / "kafka"
        self.script = str(SCRIPTS / "kafka-single-node.sh")
        self.bootstrap = ""
        self.extra_props = dict(extra_props or {})

    def start(self):
        env = dict(os.environ)
        if self.extra_props:
            env["KAFKA_SERVER_PROPS"] = "\n".join(f"{k}={v}" for k, v in self.extra_props.items())
        out = subprocess.run([self.script, "start", str(self.dir)], check=True,
                             stdout=subprocess.PIPE, text=True, timeout=300, env=env)
        self.bootstrap = out.stdout.strip().splitlines()[-1]

    def stop(self):
        subprocess.run([self.script, "stop", str(self.dir)], check=True, timeout=120)

    def kill(self):
        subprocess.run([self.script, "kill", str(self.dir)], check=True, timeout=120)

    def log_tail(self) -> str:
        return tail(self.dir / "server.log")


def gregor_binary() -> Path:
    env = os.environ.get("GREGOR_BIN")
    if env:
        p = Path(env)
        return p if p.is_absolute() else REPO_ROOT / p
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
    if not target.is_absolute():
        target = REPO_ROOT / target
    for profile in ("release", "debug"):
        p = target / profile / "gregor"
        if p.exists():
            return p
    return target / "release" / "gregor"


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Broker:
    """The broker under test (session-wide). Tests that restart it leave it running."""
    external = os.environ.get("KAFKA_BOOTSTRAP")
    kind = os.environ.get("GREGOR_TEST_BROKER", "gregor")
    workdir = tmp_path_factory.mktemp("broker")
    if external:
        b: Broker = ExternalBroker(external)
    elif kind == "kafka":
        b = KafkaBroker(workdir)
    elif kind == "gregor":
        binary = gregor_binary()
        if not binary.exists():
            pytest.fail(f"gregor binary not found at {binary}: build it "
                        "(cargo build --release -p gregor) or set GREGOR_BIN")
        b = GregorBroker(binary, workdir)
    else:
        raise ValueError(f"GREGOR_TEST_BROKER={kind!r}: expected gregor or kafka")
    b.start()
    yield b
    b.stop()


# Kafka's StandardAuthorizer, open where no ACL says otherwise and with no super users, so the
# anonymous PLAINTEXT client may administer ACLs (until an ACL on the cluster says otherwise).
AUTHORIZER_PROPS = {
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "allow.everyone.if.no.acl.found": "true",
}


@pytest.fixture(scope="module")
def authorizer_broker(tmp_path_factory) -> Broker:
    """A broker of the kind under test (GREGOR_TEST_BROKER) started with AUTHORIZER_PROPS,
    for the tests of one module."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        pytest.skip("needs a broker the tests start, with the authorizer on")
    kind = os.environ.get("GREGOR_TEST_BROKER", "gregor")
    workdir = tmp_path_factory.mktemp("authorizer-broker")
    if kind == "kafka":
        b: Broker = KafkaBroker(workdir, AUTHORIZER_PROPS)
    else:
        binary = gregor_binary()
        if not binary.exists():
            pytest.fail(f"gregor binary not found at {binary}")
        b = GregorBroker(binary, workdir, AUTHORIZER_PROPS)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def restartable_broker(broker) -> Broker:
    if not broker.can_restart:
        pytest.skip(f"{broker.name} broker cannot be restarted by the tests")
    return broker


@pytest.fixture
def bootstrap(broker) -> str:
    """host:port of the broker under test."""
    return broker.bootstrap


@pytest.fixture
def topic_name(request) -> str:
    """A fresh topic name for this test."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:80]
    return f"{base}-{uuid.uuid4().hex[:8]}"


# -- tests/go: franz-go's clientcheck (test_go_js_clients.py, test_eos_clients.py) -------------


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tail of the broker's (or each cluster node's) log to the report."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    for fixture in ("broker", "authorizer_broker"):
        b = funcargs.get(fixture) if fixture in item.fixturenames else None
        if b is not None and b.log_tail():
            report.sections.append((f"{fixture} log (tail)", b.log_tail()))
    # Clusters (cluster.GregorCluster) report every node's log.
    for value in funcargs.values():
        log_sections = getattr(value, "log_sections", None)
        if callable(log_sections):
            report.sections.extend(log_sections())
