"""The sample of `scripts/e2e.sh --try`: the KafkaCluster `events` (three combined nodes, rack
awareness from the zone label, an external listener on node ports 31090-31092 advertised at
127.0.0.1) and the KafkaTopic `orders` (6 partitions, RF 3, min.insync.replicas 2) in namespace
`kafka`, the same the scenarios install; waits until both are Ready.

    python tests/e2e/sample.py apply
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import gregor as g  # noqa: E402
import kube  # noqa: E402


def apply() -> None:
    start = time.monotonic()
    g.namespace()
    kube.apply(g.events_cluster())
    kube.apply(g.topic("orders", "events"))
    kube.wait_for("KafkaCluster events Ready", lambda: kube.cluster_ready("events", 3), 420)
    kube.wait_for("KafkaTopic orders Ready", lambda: g.topic_ready("orders"), 180)
    print(f"events and orders Ready in {time.monotonic() - start:.0f}s; cluster id "
          f"{g.describe_cluster()['cluster_id']} (asked through 127.0.0.1:31090)")


if __name__ == "__main__":
    if sys.argv[1:] != ["apply"]:
        sys.exit(__doc__)
    apply()
