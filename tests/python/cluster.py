"""Three-node Gregor clusters for the end-to-end tests.

`GregorCluster` writes one Kafka-style server.properties per node (combined broker and
controller roles, a three-voter `controller.quorum.voters`, loopback ports picked free),
formats every node with one cluster id, starts them with `gregor server-start`, and waits
until each answers /readyz and lists every broker. Nodes can then be killed, stopped and
started again on the same data dirs and ports, or frozen (SIGSTOP) and thawed.

With `controllers=N` the roles are dedicated instead: nodes 1..N are controller-only (the
voters) and the `size` nodes after them broker-only (learners of the metadata quorum), as in
`GregorCluster(tmp, size=3, controllers=3)`: controllers 1-3, brokers 4-6.

    from cluster import GregorCluster, cluster_fixture

    cluster = cluster_fixture()               # a module-scoped fixture named `cluster`

    def test_something(cluster):
        cluster.describe("t")                 # {partition: PartitionState}
        cluster.kill(2); cluster.start(2)
        cluster.freeze(3); cluster.thaw(3)    # SIGSTOP / SIGCONT

or by hand: `with GregorCluster(tmp_path) as c: ...`. Only Gregor runs here: under
GREGOR_TEST_BROKER=kafka or KAFKA_BOOTSTRAP the fixture skips.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ClusterMetadata
from kafka.admin import KafkaAdminClient

from conftest import READY_TIMEOUT, GiveUp, GregorBroker, free_ports, gregor_binary, wait_for

@dataclass(frozen=True)
class PartitionState:
    """One partition as a node's Metadata response reports it."""

    leader: int
    replicas: list[int]
    isr: list[int]


class ClusterNode(GregorBroker):
    """One node of a cluster: `gregor server-start` on its own properties file. Start, stop,
    kill and readiness are GregorBroker's; `bootstrap` is this node's client listener.

    Every listener binds `host`; with `netns` the process runs inside that network namespace
    (`ip netns exec`, which execs, so the process is still gregor's own and takes signals).
    `roles` is its process.roles: a controller-only node has no client listener, so only its
    /readyz tells that it is ready."""

    def __init__(self, binary: Path, workdir: Path, node_id: int, port: int,
                 controller_port: int, metrics_port: int, host: str = "127.0.0.1",
                 netns: str | None = None, roles: str = "broker,controller"):
        self.binary = binary
        self.roles = roles
        self.node_id = node_id
        self.name = f"gregor node {node_id}"
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log_path = workdir / "gregor.log"
        self.config_path = workdir / "server.properties"
        self.port, self.controller_port, self.metrics_port = port, controller_port, metrics_port
        self.host, self.netns = host, netns
        self.bootstrap = f"{host}:{port}"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        netns = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*netns, str(self.binary), "server-start", str(self.config_path)]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def is_broker(self) -> bool:
        return "broker" in self.roles.split(",")

    @property
    def is_controller(self) -> bool:
        return "controller" in self.roles.split(",")

    @property
    def serves_clients(self) -> bool:
        return self.is_broker

    def send_signal(self, sig: signal.Signals):
        """Send `sig` to the running process."""
        assert self.running(), f"{self.name} is not running"
        self.proc.send_signal(sig)

    def stop(self) -> int | None:
        # A frozen process would hold SIGTERM pending until killed: let it drain instead.
        if self.running():
            self.proc.send_signal(signal.SIGCONT)
        return super().stop()


class GregorCluster:
    """`size` Gregor nodes (ids 1..size), each broker and controller, on loopback unless
    told otherwise; with `controllers` > 0, that many controller-only nodes (ids
    1..controllers) and `size` broker-only ones after them.

    `overrides` are server.properties keys applied on top of the defaults of every node (a
    value of None removes a default); `node_overrides` maps a node id to keys for that node
    alone. `hosts` maps a node id to the address its listeners bind and advertise (default
    127.0.0.1), `netns` to the network namespace it runs in (see netns.py).

    On a secured cluster, `client_conf` holds the librdkafka keys (security.protocol,
    sasl.*, ssl.ca.location) the helper clients here connect with, and `format_args` the
    extra arguments of `gregor storage format` (e.g. `--add-scram`)."""

    def __init__(self, workdir: Path, size: int = 3, overrides: dict | None = None,
                 node_overrides: dict[int, dict] | None = None, binary: Path | None = None,
                 hosts: dict[int, str] | None = None, netns: dict[int, str] | None = None,
                 controllers: int = 0, client_conf: dict | None = None,
                 format_args: list[str] | None = None):
        self.workdir = Path(workdir)
        self.binary = Path(binary) if binary else gregor_binary()
        total = controllers + size
        # Picked free on the root namespace's loopback; a fresh namespace has them all free.
        ports = free_ports(3 * total)
        hosts, netns = hosts or {}, netns or {}
        self.nodes: dict[int, ClusterNode] = {}
        for i in range(total):
            node_id = i + 1
            if not controllers:
                roles = "broker,controller"
            else:
                roles = "controller" if node_id <= controllers else "broker"
            self.nodes[node_id] = ClusterNode(self.binary, self.workdir / f"node-{node_id}",
                                              node_id, *ports[3 * i:3 * i + 3],
                                              host=hosts.get(node_id, "127.0.0.1"),
                                              netns=netns.get(node_id), roles=roles)
        self.overrides = dict(overrides or {})
        self.node_overrides = {k: dict(v) for k, v in (node_overrides or {}).items()}
        self.cluster_id: str | None = None
        self.client_conf = dict(client_conf or {})
        self.format_args = list(format_args or [])
        # A script that dies before close() must not leave nodes holding ports and dirs.
        atexit.register(self._kill_running)

    # -- configuration ----------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """Every broker's client listener, comma-separated (a client's bootstrap.servers)."""
        return ",".join(n.bootstrap for n in self.nodes.values() if n.is_broker)

    @property
    def broker_ids(self) -> set[int]:
        """The nodes with the broker role."""
        return {i for i, n in self.nodes.items() if n.is_broker}

    @property
    def controller_ids(self) -> set[int]:
        """The nodes with the controller role (the quorum's voters)."""
        return {i for i, n in self.nodes.items() if n.is_controller}

    @property
    def voters(self) -> str:
        return ",".join(f"{n.node_id}@{n.host}:{n.controller_port}"
                        for n in self.nodes.values() if n.is_controller)

    def properties(self, node_id: int) -> dict[str, str]:
        """The server.properties of `node_id`, overrides applied."""
        n = self.nodes[node_id]
        size = len(self.broker_ids)
        client = f"PLAINTEXT://{n.host}:{n.port}"
        controller = f"CONTROLLER://{n.host}:{n.controller_port}"
        listeners = {"broker,controller": f"{client},{controller}", "broker": client,
                     "controller": controller}[n.roles]
        props = {
            "node.id": str(node_id),
            "process.roles": n.roles,
            "listeners": listeners,
            "advertised.listeners": client,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.quorum.voters": self.voters,
            "log.dirs": str(n.data_dir),
            "metrics.listener": f"{n.host}:{n.metrics_port}",
            "default.replication.factor": str(min(3, size)),
            "min.insync.replicas": str(min(2, size)),
            "offsets.topic.replication.factor": str(min(3, size)),
            # Groups in tests should not wait the default 3 s for more members.
            "group.initial.rebalance.delay.ms": "0",
        }
        if not n.is_broker:
            # A controller-only node has no client listener to advertise (Kafka refuses one).
            for key in ("advertised.listeners", "inter.broker.listener.name"):
                del props[key]
        for extra in (self.overrides, self.node_overrides.get(node_id, {})):
            for k, v in extra.items():
                if v is None:
                    props.pop(k, None)
                else:
                    props[k] = str(v)
        return props

    def write_config(self, node_id: int):
        n = self.nodes[node_id]
        n.workdir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k}={v}\n" for k, v in self.properties(node_id).items())
        n.config_path.write_text(text)

    def gregor(self, *args: str) -> str:
        """Run the gregor binary with `args` (a tool: topics, metadata-quorum, ...); its
        output. Raises when it exits non-zero."""
        return self._gregor(*args)

    def _gregor(self, *args: str) -> str:
        out = subprocess.run([str(self.binary), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"gregor {' '.join(args)} exited {out.returncode}:\n{out.stdout}")
        return out.stdout

    def format(self):
        """Write every node's config and format its dirs with one new cluster id."""
        self.cluster_id = self._gregor("storage", "random-uuid").strip()
        for node_id, n in self.nodes.items():
            self.write_config(node_id)
            self._gregor("storage", "format", "-t", self.cluster_id, "-c", str(n.config_path),
                         *self.format_args)

    # -- processes --------------------------------------------------------------------------

    def start_all(self, timeout: float = READY_TIMEOUT):
        """Format (the first time), launch every node that is not running, then wait until all
        are ready and each lists every broker. A node alone cannot elect a quorum leader, so
        launching them one at a time and waiting in between would never finish."""
        if self.cluster_id is None:
            self.format()
        for n in self.nodes.values():
            if not n.running():
                n.launch()
        self._wait_ready(list(self.nodes), timeout)

    def start(self, node_id: int, timeout: float = READY_TIMEOUT):
        """Start one node again (same data dir and ports) and wait until it is ready and
        lists every broker. Needs a quorum majority among the nodes running with it."""
        self.nodes[node_id].launch()
        self._wait_ready([node_id], timeout)

    def _wait_ready(self, node_ids: list[int], timeout: float):
        deadline = time.monotonic() + timeout
        try:
            for node_id in node_ids:
                self.wait_ready(node_id, max(1.0, deadline - time.monotonic()))
            for node_id in node_ids:
                if self.nodes[node_id].is_broker:
                    self.wait_brokers(node_id, max(1.0, deadline - time.monotonic()))
        except Exception as e:
            logs = "".join(f"\n--- {title} ---\n{text}" for title, text in self.log_sections())
            raise RuntimeError(f"{e}{logs}") from None

    def wait_ready(self, node_id: int, timeout: float = READY_TIMEOUT):
        """Wait until the node's Kafka port accepts and its /readyz answers 200."""
        self.nodes[node_id].wait_ready(timeout)

    def wait_brokers(self, node_id: int, timeout: float = READY_TIMEOUT,
                     expected: set[int] | None = None):
        """Wait until `node_id`'s Metadata lists `expected` brokers (default: every node with
        the broker role)."""
        want = self.broker_ids if expected is None else set(expected)
        n = self.nodes[node_id]

        def listed():
            if not n.running():
                raise GiveUp(f"node {node_id} exited with code {n.proc.returncode}")
            return set(self.brokers(node_id)) == want

        wait_for(listed, timeout, f"node {node_id} to list brokers {sorted(want)}")

    def stop(self, node_id: int) -> int | None:
        """SIGTERM the node and wait for it to exit; its exit code (0 after a clean drain)."""
        return self.nodes[node_id].stop()

    def kill(self, node_id: int) -> int | None:
        """SIGKILL the node; its exit code (-9)."""
        return self.nodes[node_id].kill()

    def freeze(self, node_id: int):
        """SIGSTOP the node: it keeps its sockets open but answers nothing, as a hung broker
        would, until thawed."""
        self.nodes[node_id].send_signal(signal.SIGSTOP)

    def thaw(self, node_id: int):
        """SIGCONT a frozen node."""
        self.nodes[node_id].send_signal(signal.SIGCONT)

    def restart(self, node_id: int, hard: bool = False):
        """Stop (SIGKILL when `hard`) and start the node again on the same dirs and ports."""
        if hard:
            self.kill(node_id)
        else:
            self.stop(node_id)
        self.start(node_id)

    def close(self) -> dict[int, int | None]:
        """SIGTERM every node, controller-only ones last (a stopping broker's controlled
        shutdown needs the quorum); their exit codes."""
        order = sorted(self.nodes.items(), key=lambda item: not item[1].is_broker)
        return {node_id: n.stop() for node_id, n in order}

    def _kill_running(self):
        for n in self.nodes.values():
            if n.running():
                n.kill()

    def __enter__(self) -> GregorCluster:
        try:
            self.start_all()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    # -- logs -------------------------------------------------------------------------------

    def log_tail(self, node_id: int) -> str:
        return self.nodes[node_id].log_tail()

    def log_sections(self) -> list[tuple[str, str]]:
        """(title, log tail) per node, for pytest's failure report (see conftest)."""
        return [(f"node {i} log (tail)", n.log_tail()) for i, n in self.nodes.items()]

    # -- metadata ---------------------------------------------------------------------------

    def admin(self, node_id: int | None = None) -> AdminClient:
        """An AdminClient bootstrapped from `node_id` alone, or from every node. Keep it
        referenced while its futures are pending: they fail with _DESTROY once it is
        collected."""
        servers = self.nodes[node_id].bootstrap if node_id else self.bootstrap
        return AdminClient({"bootstrap.servers": servers, **self.client_conf})

    def metadata(self, node_id: int | None = None, topic: str | None = None,
                 timeout: float = 10.0) -> ClusterMetadata:
        """A Metadata response, answered by `node_id` when given. A client bootstrapped from
        one node may still ask another it has learned of, so the answering broker is checked
        (librdkafka names it host:port/id) and a fresh client asks again until it matches."""
        if node_id is None:
            return self.admin().list_topics(topic=topic, timeout=timeout)
        address = self.nodes[node_id].bootstrap

        def from_node():
            md = self.admin(node_id).list_topics(topic=topic, timeout=timeout)
            # "host:port/id", or "sasl_ssl://host:port/id" on a secured listener.
            name = md.orig_broker_name.split("://")[-1]
            return md if name.split("/")[0] == address else None

        return wait_for(from_node, timeout, f"a Metadata response from node {node_id}")

    def brokers(self, node_id: int | None = None) -> list[int]:
        """Broker ids that `node_id` (or any node) lists in Metadata, sorted."""
        return sorted(self.metadata(node_id).brokers)

    def quorum_leader(self, node_id: int | None = None) -> int:
        """The metadata quorum's leader id (DescribeQuorum, kafka-python's admin client), as
        `node_id` (or any running node) reports it; -1 while there is none. The client may
        route the request to any broker in the metadata, a dead one included, and then
        raises: call it inside wait_for while a node is down."""
        servers = self.nodes[node_id].bootstrap if node_id else ",".join(
            n.bootstrap for n in self.nodes.values() if n.running() and n.is_broker)
        admin = KafkaAdminClient(bootstrap_servers=servers)
        try:
            quorum = admin.describe_metadata_quorum()
        finally:
            admin.close()
        return quorum["topics"][0]["partitions"][0]["leader_id"]

    def group_coordinator(self, group: str, node_id: int | None = None) -> int:
        """The broker coordinating `group`, as `node_id` (or any node) reports it."""
        admin = self.admin(node_id)  # the futures fail once the client is collected
        futures = admin.describe_consumer_groups([group], request_timeout=10)
        return futures[group].result(timeout=15).coordinator.id

    def describe(self, topic: str, node_id: int | None = None) -> dict[int, PartitionState]:
        """{partition: leader, replicas, isr} of `topic` as `node_id` (or any node) reports."""
        t = self.metadata(node_id, topic).topics.get(topic)
        if t is None or t.error is not None:
            raise LookupError(f"topic {topic}: {t.error if t else 'not in metadata'}")
        return {p.id: PartitionState(p.leader, list(p.replicas), list(p.isrs))
                for p in t.partitions.values()}


@contextmanager
def running_cluster(workdir: Path, **options) -> Iterator[GregorCluster]:
    """A started GregorCluster (`options` as GregorCluster takes them), closed on exit. Skips
    the test when another broker was chosen for the suite; fails it when there is no binary."""
    other_broker = os.environ.get("GREGOR_TEST_BROKER", "gregor") != "gregor"
    if os.environ.get("KAFKA_BOOTSTRAP") or other_broker:
        pytest.skip("cluster tests start Gregor nodes themselves")
    binary = gregor_binary()
    if not binary.exists():
        pytest.fail(f"gregor binary not found at {binary}: build it "
                    "(cargo build --release -p gregor) or set GREGOR_BIN")
    c = GregorCluster(workdir, binary=binary, **options)
    try:
        c.start_all()
        yield c
    finally:
        c.close()


def cluster_fixture(scope: str = "module", size: int = 3, overrides: dict | None = None,
                    node_overrides: dict[int, dict] | None = None, controllers: int = 0):
    """A pytest fixture yielding a started GregorCluster, closed afterwards. Assign it in a
    test module under the name tests should request: `cluster = cluster_fixture()`.
    `controllers` > 0 gives dedicated roles (see GregorCluster).

    Skips when another broker was chosen for the suite."""

    @pytest.fixture(scope=scope)
    def _cluster(tmp_path_factory):
        with running_cluster(tmp_path_factory.mktemp("cluster"), size=size, overrides=overrides,
                             node_overrides=node_overrides, controllers=controllers) as c:
            yield c

    return _cluster
