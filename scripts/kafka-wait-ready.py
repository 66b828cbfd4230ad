#!/usr/bin/env python3
"""Wait until a Kafka-protocol broker at HOST:PORT answers a Metadata request that lists
at least one broker, or at least N with --brokers N (a whole cluster registered and unfenced);
stdlib only; works for Apache Kafka and Gregor alike.

usage: kafka-wait-ready.py HOST:PORT [TIMEOUT_SECONDS] [--pid PID] [--brokers N]
Exits 0 when ready, 1 on timeout or when process PID has exited meanwhile.
"""
import os
import socket
import struct
import sys
import time


def metadata_brokers(host, port, timeout=2.0):
    """Send Metadata v1 (all topics) and return the number of brokers in the reply."""
    client_id = b"gregor-wait-ready"
    body = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id + struct.pack(">i", -1)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">i", len(body)) + body)
        head = _read(s, 4)
        (size,) = struct.unpack(">i", head)
        resp = _read(s, size)
    corr, nbrokers = struct.unpack(">ii", resp[:8])
    if corr != 7:
        raise RuntimeError(f"bad correlation id {corr}")
    return nbrokers


def _read(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def main(argv):
    args, opts, it = [], {}, iter(argv)
    for a in it:
        if a.startswith("--"):
            opts[a] = next(it)
        else:
            args.append(a)
    pid = int(opts["--pid"]) if "--pid" in opts else None
    want = int(opts.get("--brokers", 1))
    host, port = args[0].rsplit(":", 1)
    timeout = float(args[1]) if len(args) > 1 else 60.0
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            print(f"kafka-wait-ready: process {pid} exited", file=sys.stderr)
            return 1
        try:
            n = metadata_brokers(host, int(port))
            if n >= want:
                return 0
            last = f"{n} of {want} brokers in metadata"
        except (OSError, RuntimeError, struct.error) as e:
            last = repr(e)
        time.sleep(0.2)
    print(f"kafka-wait-ready: {host}:{port} not ready after {timeout}s ({last})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
