#!/usr/bin/env python3
"""Print N (default 1) distinct free TCP ports on 127.0.0.1.

Under pytest-xdist (PYTEST_XDIST_WORKER=gwN in the environment) they come from a slice of
27000-31999 of the worker's own, below Linux's ephemeral range, so that parallel workers and
their clients' connections never take the same port (tests/python/conftest.py's free_ports uses
20000-26999 the same way); otherwise the kernel picks them."""
import os
import random
import socket
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
worker = os.environ.get("PYTEST_XDIST_WORKER", "")
ports = []
if worker[2:].isdigit():
    base = 27000 + (int(worker[2:]) % 8) * 625
    candidates = random.sample(range(base, base + 625), 625)
    for port in candidates:
        if len(ports) == n:
            break
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
else:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
if len(ports) < n:
    sys.exit(f"free-port.py: no {n} free ports")
print(" ".join(str(p) for p in ports))
