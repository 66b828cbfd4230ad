"""Gregor on real Kubernetes: the scenarios of the end-to-end suite, in order (each builds on
the state the previous one left), against the kind cluster and operator scripts/e2e.sh made.
Numbers in the titles follow the issue's list; the rack check runs right after the install.

Every scenario under load runs tests/e2e/loadgen.py in a pod and asserts zero produce requests
failed to the application, zero acknowledged records missing, zero duplicates."""

from __future__ import annotations

import re
import threading
import time

import gregor as g
import kube
from kube import KAFKA_NS, OPERATOR_NS, RELEASE, wait_for

BOOTSTRAP = f"events-bootstrap.{KAFKA_NS}.svc:9092"
EVENTS_PODS = ["events-0", "events-1", "events-2"]
BROKERS = "app.kubernetes.io/instance=events,gregor.dev/pool=broker"
STATE: dict = {}


def ordinal(pod_name: str) -> int:
    return int(pod_name.rsplit("-", 1)[1])


def uids() -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in kube.pods(BROKERS)}


class RollWatch:
    """Watches a cluster's pods, once a second, until `done` holds: which pods were replaced
    and in what order, how long each took from going down to its replacement being Ready, and
    how many were unready at once. With `metrics`, it also reads the leading operator's
    /metrics, continuously until `until` returns: the most rolls in progress and the fewest
    ready brokers it reported."""

    def __init__(self, names: list[str], selector: str = BROKERS, metrics: bool = False):
        self._stop = threading.Event()
        self._sampler = None
        if metrics:
            # On a thread of its own, as often as the API server answers: a broker's restart
            # can be over in two seconds, between two of the pod polls.
            self._sampler = threading.Thread(target=self._sample_gauges, daemon=True)
        self.names = names
        self.selector = selector
        self.uids: dict[str, list[str]] = {}
        self.down_at: dict[str, float] = {}
        self.restart_s: dict[str, float] = {}
        self.order: list[str] = []
        self.max_unready = 0
        self.metrics = metrics
        self.max_rolls = 0.0
        self.min_ready: float | None = None
        for p in kube.pods(selector):
            self.uids[p["metadata"]["name"]] = [p["metadata"]["uid"]]
        if self._sampler:
            self._sampler.start()

    def _sample_gauges(self) -> None:
        while not self._stop.is_set():
            try:
                rolls, ready = operator_gauges()
            except Exception:  # noqa: BLE001 - an operator between leaders: sample again
                rolls, ready = None, None
            self.max_rolls = max(self.max_rolls, rolls or 0)
            if ready is not None:
                self.min_ready = ready if self.min_ready is None else min(self.min_ready, ready)
            self._stop.wait(0.1)

    def poll(self) -> None:
        now = time.monotonic()
        found = {p["metadata"]["name"]: p for p in kube.pods(self.selector)}
        unready = 0
        for name in self.names:
            p = found.get(name)
            history = self.uids.setdefault(name, [])
            if p is None or p["metadata"].get("deletionTimestamp") or not kube.pod_ready(p):
                unready += 1
            if p is not None and (not history or history[-1] != p["metadata"]["uid"]):
                history.append(p["metadata"]["uid"])
            going = p is None or p["metadata"].get("deletionTimestamp") or len(history) > 1
            if going and name not in self.down_at:
                self.down_at[name] = now
                self.order.append(name)
            if (name in self.down_at and name not in self.restart_s and p is not None
                    and len(history) > 1 and history[-1] == p["metadata"]["uid"]
                    and kube.pod_ready(p)):
                self.restart_s[name] = round(now - self.down_at[name], 1)
        self.max_unready = max(self.max_unready, unready)

    def until(self, what: str, done, timeout: float) -> float:
        start = time.monotonic()

        def probe():
            self.poll()
            return done()

        try:
            wait_for(what, probe, timeout)
            self.poll()
        finally:
            self._stop.set()
            if self._sampler:
                self._sampler.join(60)
        return round(time.monotonic() - start, 1)

    def replaced(self) -> dict[str, int]:
        """How many times each pod was replaced."""
        return {n: len(self.uids.get(n, [])) - 1 for n in self.names}


def operator_gauges() -> tuple[float | None, float | None]:
    """The leading operator's gregor_operator_rolls_in_progress and its
    gregor_operator_brokers_ready of the cluster events."""
    holder = lease_holder()
    if not holder:
        return None, None
    text = kube.operator_metrics(holder)
    return (kube.metric(text, "gregor_operator_rolls_in_progress"),
            kube.metric(text, "gregor_operator_brokers_ready",
                        {"namespace": KAFKA_NS, "cluster": "events"}))


def record_load(figures: dict, verdict: dict) -> None:
    for k in ("acked", "failed", "lost", "duplicates", "longest_stall_s", "p99_ms"):
        figures[k] = verdict.get(k)


def all_current(name: str, replicas: int):
    return lambda: kube.cluster_ready(name, replicas)


# --- 1. install ----------------------------------------------------------------------------------

def test_s1_install(figures):
    """1. Install: helm install, a three-node KafkaCluster and a KafkaTopic, Ready"""
    deploy = kube.get("deployment", RELEASE, ns=OPERATOR_NS)
    assert deploy and deploy["status"].get("readyReplicas") == 2, "two operator replicas ready"
    g.namespace()
    start = time.monotonic()
    kube.apply(g.events_cluster())
    kube.apply(g.topic("orders", "events"))
    kc = wait_for("KafkaCluster events Ready", all_current("events", 3), 420)
    figures["cluster_ready_s"] = round(time.monotonic() - start)
    wait_for("KafkaTopic orders Ready", lambda: g.topic_ready("orders"), 180)
    figures["topic_ready_s"] = round(time.monotonic() - start)
    cluster_id = kc["status"]["clusterId"]
    STATE["cluster_id"] = cluster_id

    pods = kube.pods(BROKERS)
    assert [p["metadata"]["name"] for p in pods] == EVENTS_PODS
    for p in pods:
        name = p["metadata"]["name"]
        # Every pod formatted its storage with the operator's cluster id, and it succeeded.
        fmt = next(c for c in p["spec"]["initContainers"] if c["name"] == "format")
        assert fmt["args"][:2] == ["storage", "format"], fmt["args"]
        assert fmt["args"][fmt["args"].index("--cluster-id") + 1] == cluster_id
        status = next(s for s in p["status"]["initContainerStatuses"] if s["name"] == "format")
        assert status["state"]["terminated"]["exitCode"] == 0, status
        # Its data is on a bound PVC whose volume lives on the pod's node.
        claim = next(v for v in p["spec"]["volumes"] if v["name"] == "data")
        pvc = kube.get("pvc", claim["persistentVolumeClaim"]["claimName"])
        assert pvc["status"]["phase"] == "Bound", pvc["status"]
        pv = kube.get("pv", pvc["spec"]["volumeName"], ns=None)
        terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        assert p["spec"]["nodeName"] in str(terms), (name, terms)
        # Readiness comes from the broker's /readyz.
        probe = p["spec"]["containers"][0]["readinessProbe"]["httpGet"]
        assert probe["path"] == "/readyz", probe
    # Spread: one broker per node (the default anti-affinity).
    nodes = {p["spec"]["nodeName"] for p in pods}
    figures["nodes"] = len(nodes)
    assert len(nodes) == 3, f"brokers share nodes: {[(p['metadata']['name'], p['spec']['nodeName']) for p in pods]}"

    # Inside the cluster: the bootstrap Service, with the image's own CLI in a pod.
    out = g.oneshot("describe", ["topics", "--bootstrap-server", BOOTSTRAP, "--describe",
                                 "--topic", "orders"])
    assert "PartitionCount: 6" in out and "ReplicationFactor: 3" in out, out
    # From the host, through the external listener's node ports on 127.0.0.1.
    d = g.describe_cluster()
    assert d["cluster_id"] == cluster_id, d
    parts = g.partitions("orders")
    assert len(parts) == 6 and all(len(s["replicas"]) == 3 for s in parts.values()), parts


def test_s7_rack_awareness(figures):
    """7. Rack awareness: each broker's zone in Metadata, every RF 3 partition in three zones"""
    racks = g.describe_cluster()["racks"]
    for p in kube.pods(BROKERS):
        node = kube.get("node", p["spec"]["nodeName"], ns=None)
        zone = node["metadata"]["labels"][g.ZONE_LABEL]
        assert racks[ordinal(p["metadata"]["name"])] == zone, (p["metadata"]["name"], racks)
    figures["racks"] = " ".join(f"{b}:{r}" for b, r in sorted(racks.items()))
    for partition, s in g.partitions("orders").items():
        zones = {racks[r] for r in s["replicas"]}
        assert len(zones) == 3, f"orders-{partition} replicas {s['replicas']} in zones {zones}"


# --- 2. rolling restart --------------------------------------------------------------------------

def roll_under_load(figures: dict, name: str, change: dict) -> RollWatch:
    """Applies `change` to the KafkaCluster events under load and waits for the roll to end;
    asserts one restart per pod, one pod down at a time, the active controller last, and no
    loss."""
    load = g.Load(name, "orders", BOOTSTRAP).start()
    try:
        load.wait_acked(1000, timeout=180)
        leader = g.quorum_leader()
        watch = RollWatch(EVENTS_PODS, metrics=True)
        kube.patch("kafkacluster", "events", change)
        figures["roll_s"] = watch.until("the roll to finish", all_current("events", 3), 900)
        # The operator's own gauges followed the roll: one in progress, brokers down one at a
        # time, and back to none and three once it is over.
        assert watch.max_rolls == 1 and watch.min_ready == 2, (watch.max_rolls, watch.min_ready)
        assert wait_for("the operator's gauges to settle",
                        lambda: operator_gauges() == (0, 3), 60)
        load.wait_acked(500)
    except BaseException:
        # The next scenarios count the topic's records: no producer may outlive this one.
        load.halt()
        raise
    verdict = load.stop()
    record_load(figures, verdict)
    figures["restart_s"] = " ".join(f"{n}:{s}" for n, s in sorted(watch.restart_s.items()))
    figures["order"] = ">".join(watch.order)
    assert watch.replaced() == {n: 1 for n in EVENTS_PODS}, f"replacements {watch.uids}"
    assert watch.max_unready == 1, f"{watch.max_unready} pods down at once"
    assert watch.order[-1] == f"events-{leader}", \
        f"order {watch.order}: the active controller events-{leader} goes last"
    g.assert_no_loss(verdict)
    return watch


def test_s2_rolling_restart_under_load(figures):
    """2. Rolling restart under load: a static config change rolls the brokers one at a time"""
    roll_under_load(figures, "roll",
                    {"spec": {"config": {"group.initial.rebalance.delay.ms": "2000"}}})
    kc = kube.get("kafkacluster", "events")
    assert kube.condition(kc, "Degraded").get("status") == "False", kc["status"]
    # The roll's health checks read the brokers' under-replicated partitions (the operator
    # dashboard's panel has data from the first roll on).
    text = kube.operator_metrics(lease_holder())
    assert kube.metric(text, "gregor_operator_under_replicated_partitions",
                       {"namespace": KAFKA_NS, "cluster": "events"}) is not None, text


# --- 3. upgrades ---------------------------------------------------------------------------------

def lease_holder() -> str | None:
    lease = kube.get("lease", RELEASE, ns=OPERATOR_NS)
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


def reconciles(pod: str) -> float:
    text = kube.operator_metrics(pod)
    return kube.metric(text, "gregor_operator_reconciliations_total",
                       {"resource": "KafkaCluster", "result": "ok"}) or 0


def statefulset_image(name: str = "events") -> str:
    sts = kube.get("statefulset", name)
    return next(c["image"] for c in sts["spec"]["template"]["spec"]["containers"]
                if c["name"] == "gregor")


def test_s3_upgrades(figures):
    """3. Upgrades: helm upgrade of the operator restarts no broker; spec.image rolls under load"""
    before = {p["metadata"]["name"]: (p["metadata"]["uid"],
                                       p["status"]["containerStatuses"][0]["restartCount"])
              for p in kube.pods(BROKERS)}
    assert statefulset_image() == g.IMAGE
    start = time.monotonic()
    kube.helm("upgrade", RELEASE, str(g.CHART), "--namespace", OPERATOR_NS, "--reuse-values",
              "--set", f"image.tag={g.NEXT_IMAGE.split(':', 1)[1]}", "--wait", "--timeout", "5m")

    def new_leader():
        holder = lease_holder()
        pod = holder and kube.get("pod", holder, ns=OPERATOR_NS)
        return pod and pod["spec"]["containers"][0]["image"] == g.NEXT_IMAGE and holder

    holder = wait_for("an operator pod of the new image to hold the lease", new_leader, 300)
    figures["operator_upgrade_s"] = round(time.monotonic() - start)
    # Make sure the new operator has reconciled the cluster since it took over, then check
    # that it changed nothing.
    seen = reconciles(holder)
    kube.kubectl("annotate", "kafkacluster", "events", "-n", KAFKA_NS, "--overwrite",
                 f"e2e.gregor.dev/nudge={time.time()}")
    wait_for("the new operator to reconcile events", lambda: reconciles(holder) > seen, 120)
    after = {p["metadata"]["name"]: (p["metadata"]["uid"],
                                      p["status"]["containerStatuses"][0]["restartCount"])
             for p in kube.pods(BROKERS)}
    assert after == before, f"brokers restarted by an operator upgrade: {before} -> {after}"
    assert statefulset_image() == g.IMAGE, "the brokers' image followed the operator's"
    kc = kube.get("kafkacluster", "events")
    assert kc["status"].get("image") == g.IMAGE, kc["status"]
    figures["brokers_restarted_by_operator_upgrade"] = 0

    roll_under_load(figures, "upgrade", {"spec": {"image": g.NEXT_IMAGE}})
    for p in kube.pods(BROKERS):
        assert p["spec"]["containers"][0]["image"] == g.NEXT_IMAGE


# --- 5. faults -----------------------------------------------------------------------------------

def healthy(topic: str = "orders"):
    return lambda: kube.cluster_ready("events", 3) and not g.under_replicated(topic)


def test_s5a_force_deleted_leader(figures):
    """5a. Faults: the broker leading a partition killed (SIGKILL) and its pod force-deleted"""
    load = g.Load("kill", "orders", BOOTSTRAP).start()
    load.wait_acked(1000, timeout=180)
    leader = g.partitions("orders")[0]["leader"]
    pod = f"events-{leader}"
    old = kube.get("pod", pod)["metadata"]["uid"]
    start = time.monotonic()
    g.kill9(pod)
    kube.kubectl("delete", "pod", pod, "-n", KAFKA_NS, "--grace-period=0", "--force")
    # The pod itself first: the cluster's status and the ISRs take a moment to notice.
    wait_for(f"a new {pod} Ready", lambda: (p := kube.get("pod", pod)) and
             p["metadata"]["uid"] != old and kube.pod_ready(p), 600)
    wait_for(f"{pod} back, no under-replicated partition", healthy(), 600)
    figures["recovered_s"] = round(time.monotonic() - start)
    load.wait_acked(500)
    verdict = load.stop()
    record_load(figures, verdict)
    g.assert_no_loss(verdict)


def node_of(pod: str) -> str:
    return kube.get("pod", pod)["spec"]["nodeName"]


def test_s5b_node_drain(figures):
    """5b. Faults: a worker drained under load; the PDB refuses a second broker meanwhile"""
    load = g.Load("drain", "orders", BOOTSTRAP).start()
    load.wait_acked(1000, timeout=180)
    first, second = node_of("events-1"), node_of("events-2")
    start = time.monotonic()
    try:
        kube.kubectl("drain", first, "--ignore-daemonsets", "--delete-emptydir-data",
                     "--timeout=300s", timeout=360)
        figures["drain_s"] = round(time.monotonic() - start)
        # events-1's volume lives on the drained node: its new pod waits there, unscheduled.
        assert not kube.pod_ready(kube.get("pod", "events-1") or {"metadata": {}})
        uid = kube.get("pod", "events-2")["metadata"]["uid"]
        refused = kube.run("kubectl", "drain", second, "--ignore-daemonsets",
                           "--delete-emptydir-data", "--timeout=30s", check=False, timeout=90)
        p2 = kube.get("pod", "events-2")
        assert p2["metadata"]["uid"] == uid and kube.pod_ready(p2), \
            "the PDB let a second broker go while one was down"
        figures["second_drain_refused"] = True
        del refused
    finally:
        kube.kubectl("uncordon", second)
        kube.kubectl("uncordon", first)
    wait_for("events-1 back, no under-replicated partition", healthy(), 600)
    figures["recovered_s"] = round(time.monotonic() - start)
    load.wait_acked(500)
    verdict = load.stop()
    record_load(figures, verdict)
    g.assert_no_loss(verdict)


def test_s5c_operator_killed_mid_roll(figures):
    """5c. Faults: the leading operator killed (SIGKILL, pod force-deleted) mid-roll; the other finishes it"""
    load = g.Load("opkill", "orders", BOOTSTRAP).start()
    load.wait_acked(1000, timeout=180)
    watch = RollWatch(EVENTS_PODS)
    holder = lease_holder()
    assert holder, "no operator holds the lease"
    kube.patch("kafkacluster", "events",
               {"spec": {"config": {"group.initial.rebalance.delay.ms": "2500"}}})
    watch.until("the roll to begin", lambda: watch.order, 300)
    # A crash, not a shutdown: the lease is not handed back, the standby waits for it to
    # run out. The pod goes too, so the crashed replica does not come back as the holder.
    g.kill9(holder, OPERATOR_NS)
    killed = time.monotonic()
    kube.kubectl("delete", "pod", holder, "-n", OPERATOR_NS, "--grace-period=0", "--force")
    taker = wait_for("another operator replica to take the lease",
                     lambda: (h := lease_holder()) and h != holder and h, 120)
    figures["lease_takeover_s"] = round(time.monotonic() - killed, 1)
    figures["roll_s"] = watch.until("the roll to finish", healthy(), 900)
    load.wait_acked(500)
    verdict = load.stop()
    record_load(figures, verdict)
    assert taker != holder
    assert watch.replaced() == {n: 1 for n in EVENTS_PODS}, f"replacements {watch.uids}"
    assert watch.max_unready == 1, f"{watch.max_unready} pods down at once"
    g.assert_no_loss(verdict)


# --- 6. persistence and identity -----------------------------------------------------------------

def test_s6a_every_pod_deleted_at_once(figures):
    """6a. Persistence: every broker pod deleted at once comes back with its data and id"""
    wait_for("no under-replicated partition", lambda: not g.under_replicated("orders"), 300)
    offsets = g.end_offsets("orders")
    assert sum(offsets.values()) > 0
    cluster_id = kube.get("kafkacluster", "events")["status"]["clusterId"]
    assert cluster_id == STATE.get("cluster_id", cluster_id)
    before = uids()
    start = time.monotonic()
    kube.kubectl("delete", "pod", "-n", KAFKA_NS, "-l", BROKERS, "--wait=false")
    def replaced_and_ready():
        now = {p["metadata"]["name"]: p for p in kube.pods(BROKERS)}
        return all(n in now and now[n]["metadata"]["uid"] != before[n]
                   and kube.pod_ready(now[n]) for n in before)

    wait_for("every broker pod replaced and Ready", replaced_and_ready, 600)
    wait_for("the cluster Ready", lambda: kube.cluster_ready("events", 3), 300)
    figures["all_back_s"] = round(time.monotonic() - start)
    assert g.end_offsets("orders") == offsets
    assert g.describe_cluster()["cluster_id"] == cluster_id
    figures["records"] = sum(offsets.values())


def other_cluster() -> dict:
    return {
        "apiVersion": "gregor.dev/v1alpha1", "kind": "KafkaCluster",
        "metadata": {"name": "other", "namespace": KAFKA_NS},
        "spec": {"replicas": 1, "storage": {"size": "256Mi", "deleteClaim": False},
                 "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
    }


def test_s6b_a_volume_of_another_cluster_fails_loudly(figures):
    """6b. Identity: a PVC holding another cluster's id fails its pod, reported as Degraded"""
    kube.apply(other_cluster())
    first = wait_for("KafkaCluster other Ready", all_current("other", 1), 300)
    first_id = first["status"]["clusterId"]
    kube.delete("kafkacluster", "other")
    # Its children go by garbage collection, its cluster id record among them: a new
    # KafkaCluster of the same name must not find it.
    for kind, name in (("pod", "other-0"), ("statefulset", "other"),
                       ("configmap", "other-cluster-id")):
        wait_for(f"{kind} {name} gone", gone(kind, name), 300)
    assert kube.get("pvc", "data-other-0"), "deleteClaim false keeps the claim"
    try:
        # The same name again: a new cluster id, and the old claim with the old one.
        kube.apply(other_cluster())
        kc = wait_for("KafkaCluster other Degraded with StorageFormatFailed",
                      lambda: (k := kube.get("kafkacluster", "other")) and
                      kube.condition(k, "Degraded").get("reason") == "StorageFormatFailed" and k,
                      300)
        message = kube.condition(kc, "Degraded")["message"]
        second_id = kc["status"]["clusterId"]
        assert second_id != first_id
        assert "other-0" in message and first_id in message, message
        assert not kube.pod_ready(kube.get("pod", "other-0"))
        figures["degraded"] = message[:120]
    finally:
        kube.delete("kafkacluster", "other")
        wait_for("the other cluster's pod gone", lambda: not kube.get("pod", "other-0"), 300)
        kube.delete("pvc", "data-other-0")


# --- 4. scaling ----------------------------------------------------------------------------------

def scaled_cluster(brokers: int) -> dict:
    return {
        "apiVersion": "gregor.dev/v1alpha1", "kind": "KafkaCluster",
        "metadata": {"name": "scaled", "namespace": KAFKA_NS},
        "spec": {
            "replicas": brokers,
            "controllers": {"replicas": 1},
            "config": {"min.insync.replicas": "2", "default.replication.factor": "3",
                       "offsets.topic.replication.factor": "3"},
            "storage": {"size": "1Gi", "deleteClaim": True},
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                          "limits": {"memory": "512Mi"}},
        },
    }


def replica_brokers(topic: str, bootstrap: str) -> set[int]:
    out = g.oneshot("scaled", ["topics", "--bootstrap-server", bootstrap, "--describe",
                               "--topic", topic])
    brokers: set[int] = set()
    for line in out.splitlines():
        if "Replicas:" in line:
            field = line.split("Replicas:", 1)[1].split()[0]
            brokers |= {int(b) for b in field.split(",")}
    return brokers


def test_s4_scale_a_broker_pool(figures):
    """4. Scaling: a dedicated broker pool from 3 to 5 and back under load"""
    bootstrap = f"scaled-bootstrap.{KAFKA_NS}.svc:9092"
    kube.apply(scaled_cluster(3))
    kube.apply(g.topic("scaled-load", "scaled"))
    wait_for("KafkaCluster scaled Ready", all_current("scaled", 4), 420)
    wait_for("KafkaTopic scaled-load Ready", lambda: g.topic_ready("scaled-load"), 180)
    load = g.Load("scale", "scaled-load", bootstrap).start()
    load.wait_acked(1000, timeout=180)

    start = time.monotonic()
    kube.patch("kafkacluster", "scaled", {"spec": {"replicas": 5}})
    wait_for("5 brokers Ready, the scale step done",
             lambda: (k := kube.cluster_ready("scaled", 6)) and not k["status"].get("scaling"),
             900, interval=2)
    figures["up_s"] = round(time.monotonic() - start)
    moved = replica_brokers("scaled-load", bootstrap)
    assert {3, 4} <= moved, f"no partition reassigned onto the new brokers: {moved}"
    load.wait_acked(500)

    start = time.monotonic()
    kube.patch("kafkacluster", "scaled", {"spec": {"replicas": 3}})
    wait_for("back to 3 brokers, the scale step done",
             lambda: (k := kube.cluster_ready("scaled", 4)) and not k["status"].get("scaling")
             and not kube.get("pod", "scaled-broker-3") and not kube.get("pod", "scaled-broker-4"),
             900, interval=2)
    figures["down_s"] = round(time.monotonic() - start)
    assert replica_brokers("scaled-load", bootstrap) <= {0, 1, 2}
    quorum = g.oneshot("quorum", ["metadata-quorum", "--bootstrap-server", bootstrap,
                                  "describe", "--status"])
    observers = next(l for l in quorum.splitlines() if "CurrentObservers" in l)
    ids = {int(i) for i in re.findall(r"\d+", observers.split(":", 1)[1])}
    assert not ids & {3, 4}, f"removed brokers still observe the quorum: {quorum}"
    load.wait_acked(500)
    verdict = load.stop()
    record_load(figures, verdict)
    g.assert_no_loss(verdict)


# --- 9. security --------------------------------------------------------------------------------

SECURE = "app.kubernetes.io/instance=secure"


def secure_cluster() -> dict:
    """Three combined nodes with SCRAM over TLS on the in-cluster listener, the
    StandardAuthorizer, and the cluster CA the operator generates."""
    return {
        "apiVersion": "gregor.dev/v1alpha1", "kind": "KafkaCluster",
        "metadata": {"name": "secure", "namespace": KAFKA_NS},
        "spec": {
            "replicas": 3,
            "config": {"min.insync.replicas": "2", "default.replication.factor": "3",
                       "offsets.topic.replication.factor": "3"},
            "storage": {"size": "1Gi", "deleteClaim": True},
            "listeners": {"tls": True, "authentication": {"type": "scram-sha-512"}},
            "authorization": {"type": "simple"},
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                          "limits": {"memory": "512Mi"}},
        },
    }


def writer_user() -> dict:
    """A SCRAM user that may produce to and consume secure-orders, nothing else."""
    return {
        "apiVersion": "gregor.dev/v1alpha1", "kind": "KafkaUser",
        "metadata": {"name": "writer", "namespace": KAFKA_NS},
        "spec": {
            "cluster": "secure",
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": [
                {"resource": {"type": "topic", "name": "secure-orders"},
                 "operations": ["Describe", "Write", "Read"]},
                {"resource": {"type": "group", "name": "loadgen-", "patternType": "prefix"},
                 "operations": ["Read"]},
            ]},
        },
    }


def tls_reloads(pod: str) -> float:
    """A broker's successful TLS reloads, from its /metrics through the API server's proxy."""
    text = kube.kubectl("get", "--raw",
                        f"/api/v1/namespaces/{KAFKA_NS}/pods/{pod}:9404/proxy/metrics")
    return kube.metric(text, "gregor_tls_reloads_total", {"result": "success"}) or 0.0


def restarts(selector: str) -> dict[str, tuple[str, int, str]]:
    """Each pod's UID, container restart count and start time."""
    out = {}
    for p in kube.pods(selector):
        statuses = p["status"].get("containerStatuses", [])
        out[p["metadata"]["name"]] = (p["metadata"]["uid"],
                                      sum(c.get("restartCount", 0) for c in statuses),
                                      p["status"].get("startTime"))
    return out


def test_s9_secured_cluster_renews_its_ca_under_load(figures):
    """9. Security: a TLS+SCRAM cluster with ACLs; a KafkaUser's client produces through a cluster CA renewal and key replacement, no broker restarted"""
    start = time.monotonic()
    kube.apply(secure_cluster())
    kube.apply(g.topic("secure-orders", "secure"))
    kube.apply(writer_user())
    wait_for("KafkaCluster secure Ready", lambda: kube.cluster_ready("secure", 3), 420)
    wait_for("KafkaTopic secure-orders Ready (created by the operator over mutual TLS)",
             lambda: g.topic_ready("secure-orders"), 180)
    user = wait_for("KafkaUser writer Ready",
                    lambda: (u := kube.get("kafkauser", "writer")) and
                    kube.condition(u, "Ready").get("status") == "True" and u, 180)
    assert user["status"]["secret"] == "writer"
    figures["secured_ready_s"] = round(time.monotonic() - start)
    load = g.Load("secure", "secure-orders", "secure-bootstrap.kafka.svc:9092", rate=100,
                  user="writer", cluster_ca="secure-cluster-ca-cert").start()
    try:
        load.wait_acked(300, timeout=180)
        before = restarts(SECURE)
        reloads = {pod: tls_reloads(pod) for pod in before}
        ca = kube.get("secret", "secure-cluster-ca-cert")
        old_ca = ca["data"]["ca.crt"]
        renew_at = time.monotonic()
        kube.kubectl("annotate", "secret", "-n", KAFKA_NS, "secure-cluster-ca-cert",
                     "gregor.dev/force-renew=true")
        # (The operator writes the renewed Secret, then removes the annotation: both awaited.)
        renewed = wait_for(
            "the cluster CA certificate renewed and force-renew removed",
            lambda: (c := kube.get("secret", "secure-cluster-ca-cert")) and
            c["data"]["ca.crt"] != old_ca and
            "gregor.dev/force-renew" not in c["metadata"].get("annotations", {}) and c, 300)
        assert renewed["metadata"]["annotations"]["gregor.dev/ca-cert-generation"] == "1"
        # Kubernetes brings the renewed Secrets into the pods (its sync period, up to a minute
        # or so), then each broker reloads its listeners' key and trust stores.
        wait_for("every broker reloaded its certificates",
                 lambda: all(tls_reloads(p) > reloads[p] for p in reloads), 300, interval=3)
        figures["renewal_to_reload_s"] = round(time.monotonic() - renew_at, 1)
        load.wait_acked(300, timeout=180)
        # A new key: the brokers get certificates from it, chained through the new CA
        # certificate signed by the old key, which is all the client (started with the old
        # CA certificate) trusts.
        reloads = {pod: tls_reloads(pod) for pod in before}
        replace_at = time.monotonic()
        kube.kubectl("annotate", "secret", "-n", KAFKA_NS, "secure-cluster-ca",
                     "gregor.dev/force-replace=true")
        wait_for(
            "the cluster CA key replaced and force-replace removed",
            lambda: (k := kube.get("secret", "secure-cluster-ca")) and
            k["metadata"].get("annotations", {}).get("gregor.dev/ca-key-generation") == "1"
            and "gregor.dev/force-replace" not in k["metadata"].get("annotations", {}), 300)
        wait_for("every broker reloaded certificates from the new key",
                 lambda: all(tls_reloads(p) > reloads[p] for p in reloads), 300, interval=3)
        figures["replacement_to_reload_s"] = round(time.monotonic() - replace_at, 1)
        status = kube.get("kafkacluster", "secure")["status"]["clusterCa"]
        assert status["keyGeneration"] == 1 and status.get("previousTrustedUntil"), status
        load.wait_acked(300, timeout=180)
        verdict = load.stop()
    except BaseException:
        load.halt()
        raise
    record_load(figures, verdict)
    g.assert_no_loss(verdict)
    after = restarts(SECURE)
    figures["brokers_restarted"] = sum(1 for p, v in before.items() if after.get(p) != v)
    assert after == before, f"broker pods restarted or replaced: {before} -> {after}"
    kube.delete("kafkauser", "writer")
    wait_for("KafkaUser writer deleted (its finalizer done)", gone("kafkauser", "writer"), 120)


# --- 8. clean-up ---------------------------------------------------------------------------------

def gone(kind: str, name: str, ns: str | None = KAFKA_NS):
    return lambda: kube.get(kind, name, ns=ns) is None


def test_s8_clean_up(figures):
    """8. Clean-up: deleting a KafkaCluster removes its children; helm uninstall leaves nothing"""
    for t in ("orders", "scaled-load"):
        kube.delete("kafkatopic", t)
    kube.delete("kafkacluster", "events", KAFKA_NS, "--wait=false")
    kube.delete("kafkacluster", "scaled", KAFKA_NS, "--wait=false")
    kube.delete("kafkatopic", "secure-orders")
    kube.delete("kafkacluster", "secure", KAFKA_NS, "--wait=false")
    children = [("statefulset", "events"), ("service", "events-nodes"),
                ("service", "events-bootstrap"), ("service", "events-0-external"),
                ("configmap", "events-config"), ("configmap", "events-cluster-id"),
                ("poddisruptionbudget", "events"), ("serviceaccount", "events-broker"),
                ("statefulset", "scaled-broker"), ("statefulset", "scaled-controller"),
                ("statefulset", "secure"), ("secret", "secure-cluster-ca"),
                ("secret", "secure-node-certs"), ("kafkacluster", "events"),
                ("kafkacluster", "scaled"), ("kafkacluster", "secure")]
    for kind, name in children:
        wait_for(f"{kind} {name} deleted", gone(kind, name), 300)
    wait_for("the rack ClusterRoleBinding deleted",
             gone("clusterrolebinding", f"gregor-rack.{KAFKA_NS}.events", ns=None), 120)
    wait_for("every broker pod gone", lambda: not kube.get("pods", selector="app.kubernetes.io/name=gregor"), 300)
    # deleteClaim: false keeps the claims of events, true deletes those of scaled.
    claims = {p["metadata"]["name"] for p in kube.get("pvc")}
    assert {"data-events-0", "data-events-1", "data-events-2"} <= claims, claims
    wait_for("the claims of scaled deleted",
             lambda: not [c for c in (p["metadata"]["name"] for p in kube.get("pvc"))
                          if c.startswith("data-scaled")], 300)
    for c in sorted(claims):
        if c.startswith("data-events"):
            kube.delete("pvc", c)

    kube.helm("uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait", "--timeout", "5m")
    wait_for("no operator pod", lambda: not kube.get("pods", ns=OPERATOR_NS), 300)
    left = kube.kubectl("get", "all,serviceaccount,role,rolebinding,lease,configmap,secret",
                        "-n", OPERATOR_NS, "-o", "name")
    left = [l for l in left.split() if l not in ("configmap/kube-root-ca.crt",
                                                 "serviceaccount/default")]
    assert not left, f"left in {OPERATOR_NS} after helm uninstall: {left}"
    cluster_scoped = kube.kubectl("get", "clusterrole,clusterrolebinding", "-o", "name")
    left = [l for l in cluster_scoped.split() if "/gregor" in l]
    assert not left, f"cluster-scoped objects left after helm uninstall: {left}"
    figures["left_behind"] = 0
