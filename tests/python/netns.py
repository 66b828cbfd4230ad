"""A private network for cluster tests that cut nodes off: one Linux network namespace per
node, each joined to a bridge in the root namespace by a veth pair, with addresses from a
10.77.N.0/24 that no interface on the machine uses yet.

    root namespace                          namespace <prefix>n1
    bridge <prefix>br 10.77.N.1/24 ─ veth <prefix>v1 ═══ eth0 10.77.N.11/24  (node 1)
                                   ─ veth <prefix>v2 ═══ eth0 10.77.N.12/24  (node 2) ...

The test process stays in the root namespace and reaches every node through the bridge;
`exec_prefix(node_id)` runs a command inside a node's namespace, from where, while the node is
isolated, nothing but that node is reachable. `isolate(node_id)` disables the node's
bridge port: frames to and from it are dropped silently in both directions while both links
stay up, as a cut cable past a switch would (no reset, no carrier change); `heal` forwards
again. An `unreachable` route for the subnet, below the bridge's own, keeps traffic for these
addresses on the machine whatever state the bridge is in.

Names carry the test process's pid, so concurrent runs do not collide. Needs root and
iproute2 (`ip`, `bridge`) and the right to make namespaces and bridges; `unavailable()` says
which is missing.

    net = NamespaceNetwork([1, 2, 3])
    net.create()
    try:
        GregorCluster(..., hosts=net.hosts, netns=net.namespaces)
        net.isolate(1); net.heal(1)
    finally:
        net.destroy()
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess


def run(*args: str) -> str:
    """Run one iproute2 command; its stdout, or RuntimeError with its stderr."""
    out = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {out.returncode}: {out.stderr.strip()}")
    return out.stdout


class NamespaceNetwork:
    """One namespace per node id on a bridge of the root namespace (see the module doc)."""

    def __init__(self, node_ids: list[int]):
        prefix = f"gp{os.getpid() % 100_000}"  # interface names have at most 15 characters
        self.bridge = f"{prefix}br"
        self.namespaces = {i: f"{prefix}n{i}" for i in node_ids}
        self.veths = {i: f"{prefix}v{i}" for i in node_ids}
        self.subnet: str | None = None
        self.hosts: dict[int, str] = {}
        # What create() made, so destroy() removes exactly that, even after a partial create.
        self._made: list[tuple[str, str]] = []

    @staticmethod
    def unavailable() -> str | None:
        """Why namespaces cannot be made here, or None when they can."""
        if os.geteuid() != 0:
            return "network namespaces need root"
        missing = [tool for tool in ("ip", "bridge") if shutil.which(tool) is None]
        if missing:
            return f"needs iproute2 ({', '.join(missing)} not found)"
        # Root in a container may still lack the rights: try what create() does first.
        probe = f"gp{os.getpid() % 100_000}probe"
        for what, add, delete in (
            ("network namespaces", ["ip", "netns", "add", probe], ["ip", "netns", "del", probe]),
            ("bridges", ["ip", "link", "add", probe, "type", "bridge"],
             ["ip", "link", "del", probe]),
        ):
            try:
                run(*add)
            except RuntimeError as e:
                return f"cannot make {what} here: {e}"
            run(*delete)
        return None

    def _free_subnet(self) -> str:
        used = set(re.findall(r"\b10\.77\.(\d+)\.", run("ip", "-4", "addr") + run("ip", "route")))
        for third in range(1, 255):
            if str(third) not in used:
                return f"10.77.{third}"
        raise RuntimeError("no free 10.77.N.0/24 left")

    def create(self):
        """Make the bridge, the namespaces and their links; raises on any step that fails
        (call destroy() afterwards all the same)."""
        net = self._free_subnet()
        self.subnet = f"{net}.0/24"
        run("ip", "route", "add", "unreachable", self.subnet, "metric", "4294967295")
        self._made.append(("route", self.subnet))
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self._made.append(("link", self.bridge))
        run("ip", "addr", "add", f"{net}.1/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        # With br_netfilter loaded (Docker loads it and sets FORWARD to DROP), bridged frames
        # go through iptables' FORWARD chain: let this bridge's own traffic through.
        if _bridged_frames_filtered() and shutil.which("iptables"):
            rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
            run("iptables", "-I", *rule)
            self._made.append(("iptables", " ".join(rule)))
        for node_id, ns in self.namespaces.items():
            run("ip", "netns", "add", ns)
            self._made.append(("netns", ns))
            veth = self.veths[node_id]
            # The namespace end is created inside it, named eth0 there.
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._made.append(("link", veth))
            run("ip", "link", "set", veth, "master", self.bridge)
            run("ip", "link", "set", veth, "up")
            host = f"{net}.{10 + node_id}"
            inside = ["ip", "netns", "exec", ns]
            run(*inside, "ip", "addr", "add", f"{host}/24", "dev", "eth0")
            run(*inside, "ip", "link", "set", "eth0", "up")
            run(*inside, "ip", "link", "set", "lo", "up")
            self.hosts[node_id] = host

    def exec_prefix(self, node_id: int) -> list[str]:
        """The argv prefix that runs a command inside `node_id`'s namespace."""
        return ["ip", "netns", "exec", self.namespaces[node_id]]

    def _port_state(self, node_id: int, state: str):
        run("bridge", "link", "set", "dev", self.veths[node_id], "state", state)

    def isolate(self, node_id: int):
        """Drop every frame to and from `node_id` (its bridge port disabled)."""
        self._port_state(node_id, "0")

    def heal(self, node_id: int):
        """Forward `node_id`'s frames again."""
        self._port_state(node_id, "3")

    def destroy(self):
        """Remove what create() made, newest first; every step is tried. Stop the processes
        inside the namespaces first: a deleted namespace lives on while a process holds it."""
        errors = []
        while self._made:
            kind, name = self._made.pop()
            cmd = {"route": ["ip", "route", "del", "unreachable", name, "metric", "4294967295"],
                   "link": ["ip", "link", "del", name],
                   "netns": ["ip", "netns", "del", name],
                   "iptables": ["iptables", "-D", *name.split()]}[kind]
            try:
                run(*cmd)
            except RuntimeError as e:
                # Deleting a namespace takes its veth ends with it.
                if not (kind == "link" and "Cannot find device" in str(e)):
                    errors.append(str(e))
        if errors:
            raise RuntimeError("network teardown left things behind: " + "; ".join(errors))


def _bridged_frames_filtered() -> bool:
    """Whether bridged IPv4 frames pass through iptables (br_netfilter loaded and enabled)."""
    try:
        with open("/proc/sys/net/bridge/bridge-nf-call-iptables") as f:
            return f.read().strip() == "1"
    except OSError:
        return False
