"""What the scenarios deploy and measure: the KafkaCluster and KafkaTopic manifests, a Kafka
admin client on the host (through the external listener's node ports on 127.0.0.1 only), and
the load generator pods (tests/e2e/loadgen.py in the client image, inside the cluster)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka import Consumer

import kube
from kube import KAFKA_NS

HERE = Path(__file__).parent
CHART = Path(os.environ.get("E2E_CHART", HERE.parent.parent / "charts" / "gregor"))
IMAGE = os.environ.get("E2E_IMAGE", "gregor:0.1.0")
NEXT_IMAGE = os.environ.get("E2E_NEXT_IMAGE", "gregor:0.1.0-next")
CLIENT_IMAGE = os.environ.get("E2E_CLIENT_IMAGE", "gregor-e2e-client:local")
# The node ports kind maps to 127.0.0.1 (tests/e2e/kind.yaml), one per broker of `events`.
NODE_PORTS = [31090, 31091, 31092]
HOST_BOOTSTRAP = ",".join(f"127.0.0.1:{p}" for p in NODE_PORTS)
ZONE_LABEL = "topology.kubernetes.io/zone"


def events_cluster() -> dict:
    """Three combined nodes with rack awareness from the zone label, an external NodePort
    listener on the fixed ports kind maps to 127.0.0.1, min.insync.replicas 2."""
    return {
        "apiVersion": "gregor.dev/v1alpha1",
        "kind": "KafkaCluster",
        "metadata": {"name": "events", "namespace": KAFKA_NS},
        "spec": {
            "replicas": 3,
            "config": {
                "min.insync.replicas": "2",
                "default.replication.factor": "3",
                "offsets.topic.replication.factor": "3",
            },
            "storage": {"size": "1Gi", "deleteClaim": False},
            "rack": {"topologyKey": ZONE_LABEL},
            "listeners": {
                "external": {
                    "type": "NodePort",
                    "advertised": {str(i): f"127.0.0.1:{p}" for i, p in enumerate(NODE_PORTS)},
                    "nodePorts": {str(i): p for i, p in enumerate(NODE_PORTS)},
                },
            },
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                          "limits": {"memory": "512Mi"}},
        },
    }


def topic(name: str, cluster: str, partitions: int = 6, replicas: int = 3,
          min_isr: int = 2) -> dict:
    return {
        "apiVersion": "gregor.dev/v1alpha1",
        "kind": "KafkaTopic",
        "metadata": {"name": name, "namespace": KAFKA_NS},
        "spec": {"cluster": cluster, "partitions": partitions, "replicationFactor": replicas,
                 "config": {"min.insync.replicas": str(min_isr)}},
    }


def namespace() -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KAFKA_NS}},
               ns=None)


def topic_ready(name: str) -> dict | None:
    t = kube.get("kafkatopic", name)
    return t if kube.condition(t, "Ready").get("status") == "True" else None


# --- the Kafka side, from the host ------------------------------------------------------------------

def admin() -> AdminClient:
    return AdminClient({"bootstrap.servers": HOST_BOOTSTRAP, "socket.timeout.ms": 10000})


def describe_cluster() -> dict:
    """Cluster id, controller and each broker's rack, as DescribeCluster answers."""
    client = admin()  # kept until the answer is in: a dropped client cancels its requests
    d = client.describe_cluster(request_timeout=15).result()
    return {"cluster_id": d.cluster_id,
            "controller": d.controller.id if d.controller else None,
            "racks": {n.id: n.rack for n in d.nodes}}


def partitions(name: str) -> dict[int, dict]:
    """Each partition's leader, replicas and ISR, from Metadata."""
    md = admin().list_topics(name, timeout=15)
    t = md.topics[name]
    if t.error is not None:
        raise RuntimeError(f"metadata of {name}: {t.error}")
    return {p.id: {"leader": p.leader, "replicas": list(p.replicas), "isr": list(p.isrs)}
            for p in t.partitions.values()}


def under_replicated(name: str) -> list[int]:
    return [p for p, s in partitions(name).items()
            if sorted(s["isr"]) != sorted(s["replicas"]) or s["leader"] < 0]


def end_offsets(name: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": HOST_BOOTSTRAP, "group.id": f"e2e-offsets-{uuid.uuid4()}"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(name, p), timeout=15)[1]
                for p in partitions(name)}
    finally:
        c.close()


def quorum_leader() -> int:
    """The active controller (the quorum leader), asked with Gregor's own tool in a pod."""
    out = oneshot("quorum", ["metadata-quorum", "--bootstrap-server",
                             "events-bootstrap:9092", "describe", "--status"])
    for line in out.splitlines():
        if line.strip().startswith("LeaderId:"):
            return int(line.split(":", 1)[1])
    raise RuntimeError(f"no LeaderId in: {out}")


def oneshot(name: str, args: list[str], image: str = IMAGE, timeout: float = 120) -> str:
    """Runs the broker image's CLI once in a pod of its own (on the control plane) and returns
    what it printed."""
    pod = f"cli-{name}-{uuid.uuid4().hex[:6]}"
    kube.apply({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": KAFKA_NS, "labels": {"app": "e2e-cli"}},
        "spec": {**_on_control_plane(), "restartPolicy": "Never",
                 "containers": [{"name": "cli", "image": image, "args": args,
                                 "imagePullPolicy": "IfNotPresent"}]},
    })
    try:
        phase = kube.wait_for(f"pod {pod} to finish", lambda: _finished(pod), timeout)
        out = kube.logs(pod)
        if phase != "Succeeded":
            raise RuntimeError(f"{' '.join(args)} failed in {pod}: {out}")
        return out
    finally:
        kube.delete("pod", pod, KAFKA_NS, "--wait=false")


def kill9(pod: str, ns: str = KAFKA_NS) -> None:
    """SIGKILL to the main process of `pod`'s first container, from its node (kind's node
    containers are Docker containers on this machine): a crash, with no shutdown of any kind."""
    p = kube.get("pod", pod, ns=ns)
    node = p["spec"]["nodeName"]
    container = p["spec"]["containers"][0]["name"]
    status = next(c for c in p["status"]["containerStatuses"] if c["name"] == container)
    cid = status["containerID"].split("://", 1)[1]
    pid = kube.run("docker", "exec", node, "crictl", "inspect", "--output", "go-template",
                   "--template", "{{.info.pid}}", cid).strip()
    assert pid.isdigit() and int(pid) > 1, f"no process for {pod}: {pid!r}"
    kube.run("docker", "exec", node, "kill", "-9", pid)


def _finished(pod: str) -> str | None:
    p = kube.get("pod", pod)
    phase = (p or {}).get("status", {}).get("phase")
    return phase if phase in ("Succeeded", "Failed") else None


def _on_control_plane() -> dict:
    """Load and tools run on the control plane, which no scenario drains or breaks."""
    return {
        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
        "tolerations": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                         "effect": "NoSchedule"}],
    }


# --- the load --------------------------------------------------------------------------------------

class Load:
    """One run of tests/e2e/loadgen.py in a pod: idempotent acks=all records at a fixed rate to
    `topic`, read back by a consumer group; stopped by a file, its verdict read off its log."""

    def __init__(self, name: str, topic: str, bootstrap: str, rate: int = 200,
                 user: str | None = None, cluster_ca: str | None = None):
        """`user`: a SCRAM KafkaUser whose Secret gives the password (SASL_SSL), trusting
        the CA certificate in the Secret `cluster_ca` (mounted at /ca)."""
        self.pod = f"load-{name}"
        self.run = f"{name}-{uuid.uuid4().hex[:8]}"
        self.topic = topic
        self.bootstrap = bootstrap
        self.rate = rate
        self.user = user
        self.cluster_ca = cluster_ca

    def start(self) -> "Load":
        kube.apply({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "loadgen", "namespace": KAFKA_NS},
            "data": {"loadgen.py": (HERE / "loadgen.py").read_text()},
        })
        kube.delete("pod", self.pod)
        env = {"BOOTSTRAP": self.bootstrap, "TOPIC": self.topic, "RATE": str(self.rate),
               "RUN_ID": self.run}
        env_list = [{"name": k, "value": v} for k, v in env.items()]
        mounts = [{"name": "load", "mountPath": "/load"}]
        volumes = [{"name": "load", "configMap": {"name": "loadgen"}}]
        if self.user:
            env_list.append({"name": "CLIENT_CONFIG", "value": json.dumps({
                "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": self.user, "ssl.ca.location": "/ca/ca.crt"})})
            env_list.append({"name": "SASL_PASSWORD", "valueFrom": {
                "secretKeyRef": {"name": self.user, "key": "password"}}})
            mounts.append({"name": "ca", "mountPath": "/ca", "readOnly": True})
            volumes.append({"name": "ca", "secret": {"secretName": self.cluster_ca}})
        kube.apply({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.pod, "namespace": KAFKA_NS, "labels": {"app": "e2e-load"}},
            "spec": {
                **_on_control_plane(),
                "restartPolicy": "Never",
                "containers": [{
                    "name": "load", "image": CLIENT_IMAGE, "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-u", "/load/loadgen.py"],
                    "env": env_list,
                    "volumeMounts": mounts,
                }],
                "volumes": volumes,
            },
        })
        return self

    def progress(self) -> dict:
        """The last progress line the pod printed ({} before the first, or while the pod
        is still starting)."""
        try:
            text = kube.logs(self.pod)
        except RuntimeError:
            return {}
        lines = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
        progress = [l for l in lines if "acked" in l and not l.get("final")]
        return progress[-1] if progress else {}

    def wait_acked(self, at_least: int, timeout: float = 120) -> dict:
        """Waits until the producer has `at_least` more acknowledgements than now."""
        base = self.progress().get("acked", 0)
        return kube.wait_for(
            f"{self.pod} to get {at_least} more records acknowledged",
            lambda: (p := self.progress()) and p.get("acked", 0) >= base + at_least and p,
            timeout, interval=2)

    def halt(self) -> None:
        """Ends the producer without a verdict (a scenario that failed midway)."""
        kube.delete("pod", self.pod, KAFKA_NS, "--wait=true")

    def stop(self, timeout: float = 600) -> dict:
        """Stops producing and returns the final verdict (see loadgen.py)."""
        kube.kubectl("exec", "-n", KAFKA_NS, self.pod, "--", "touch", "/tmp/stop")
        kube.wait_for(f"{self.pod} to finish", lambda: _finished(self.pod), timeout, interval=2)
        lines = [json.loads(l) for l in kube.logs(self.pod).splitlines() if l.startswith("{")]
        final = [l for l in lines if l.get("final")]
        if not final:
            raise AssertionError(f"{self.pod} printed no verdict: {lines[-5:]}")
        kube.delete("pod", self.pod, KAFKA_NS, "--wait=false")
        return final[-1]


def assert_no_loss(verdict: dict) -> None:
    """Zero failed produces, zero acknowledged records missing, zero duplicates, and the
    consumer group read every acknowledged record."""
    assert "error" not in verdict, verdict
    assert verdict["acked"] > 0, verdict
    assert verdict["failed"] == 0, f"produce failures seen by the application: {verdict}"
    assert verdict["lost"] == 0, f"acknowledged records missing from the log: {verdict}"
    assert verdict["duplicates"] == 0, f"records written twice: {verdict}"
    assert verdict["not_consumed"] == 0, f"acknowledged records the group never read: {verdict}"
