"""Helpers the Python benchmark scripts share (imported from benches/, not run)."""

import socket
import time


def wait_port(port):
    """Waits up to 10 s for something to accept connections on 127.0.0.1:`port`."""
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never opened")
