#!/usr/bin/env python3
"""Capture Kafka request frames from real clients, for golden-bytes tests.

    capture-frames.py LISTEN_PORT BROKER_HOST:PORT OUT_DIR PREFIX

Proxies every connection on 127.0.0.1:LISTEN_PORT to the broker and writes the first request
of each (API key, version) seen to OUT_DIR/PREFIX-k<key>-v<version>.bin (the frame body, without
its size prefix). Start the broker with advertised.listeners pointing at the proxy so clients
come back through it. Stops after --seconds (default 120) or on SIGTERM.
"""
import os
import selectors
import signal
import socket
import struct
import sys
import time


def main():
    port, broker, out, prefix = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    seconds = float(os.environ.get("CAPTURE_SECONDS", "120"))
    host, bport = broker.rsplit(":", 1)
    os.makedirs(out, exist_ok=True)
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(64)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, ("accept", None))
    pending = {}  # client socket -> bytes not yet parsed into frames
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    deadline = time.time() + seconds
    while not stop[0] and time.time() < deadline:
        for key, _ in sel.select(timeout=0.2):
            kind, peer = key.data
            s = key.fileobj
            if kind == "accept":
                c, _ = s.accept()
                b = socket.create_connection((host, int(bport)))
                sel.register(c, selectors.EVENT_READ, ("client", b))
                sel.register(b, selectors.EVENT_READ, ("broker", c))
                pending[c] = b""
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                for x in (s, peer):
                    try:
                        sel.unregister(x)
                    except (KeyError, ValueError):
                        pass
                    x.close()
                    pending.pop(x, None)
                continue
            peer.sendall(data)
            if kind == "client":
                buf = pending.get(s, b"") + data
                while len(buf) >= 4:
                    (n,) = struct.unpack(">i", buf[:4])
                    if len(buf) < 4 + n:
                        break
                    frame, buf = buf[4:4 + n], buf[4 + n:]
                    api, ver = struct.unpack(">hh", frame[:4])
                    path = os.path.join(out, f"{prefix}-k{api}-v{ver}.bin")
                    if not os.path.exists(path):
                        with open(path, "wb") as f:
                            f.write(frame)
                pending[s] = buf


if __name__ == "__main__":
    main()
