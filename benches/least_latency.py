"""Least latency side by side: the same four upstreams (served here: three answer in 5 ms, one
in 50 ms) behind Switchyard with weighted round-robin, least-connections and least latency,
HAProxy with `leastconn` and `random(2)`, and NGINX with `least_conn`; the same closed load
(32 clients back to back for 6 s after 1 s of warm-up) through each. Prints per setup the
requests answered, p50 and p99 latency, and the slow backend's share.

Run by benches/least_latency.sh, which builds Switchyard and passes its path.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import time

from loopback import wait_port

PORTS = [18521, 18522, 18523, 18524]
DELAYS = [0.005, 0.005, 0.005, 0.050]
PROXY_PORT = 18530
CLIENTS = 32
WARM_UP = 1.0
RUN = 6.0


async def serve(index):
    async def handle(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await asyncio.sleep(DELAYS[index])
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Upstream: u%d\r\n\r\nok" % index
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client left, or the benchmark is over
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", PORTS[index], backlog=512)


async def client(samples, stop_at, record_from):
    reader, writer = await asyncio.open_connection("127.0.0.1", PROXY_PORT)
    while time.monotonic() < stop_at:
        start = time.monotonic()
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        headers = {
            k.lower(): v
            for k, v in (l.split(": ", 1) for l in head.split("\r\n")[1:] if ": " in l)
        }
        await reader.readexactly(int(headers.get("content-length", "0")))
        if start >= record_from:
            samples.append((time.monotonic() - start, headers.get("x-upstream")))
    writer.close()


def switchyard(work, binary, algorithm):
    path = os.path.join(work, f"switchyard-{algorithm}.toml")
    backends = "".join(
        f'\n[[pools.backends]]\nname = "u{i}"\naddress = "127.0.0.1:{port}"\n'
        for i, port in enumerate(PORTS)
    )
    with open(path, "w") as f:
        f.write(
            f'[[listeners]]\nname = "bench"\nbind = "127.0.0.1:{PROXY_PORT}"\n\n'
            "[admin]\nenabled = false\n\n[access_log]\nenabled = false\n\n"
            "[reload]\nwatch = false\n\n"
            '[[routes]]\nname = "all"\npool = "pool"\n\n'
            f'[[pools]]\nname = "pool"\nalgorithm = "{algorithm}"\n' + backends
        )
    return subprocess.Popen([binary, "run", "--workers", "1", "--config", path, "--log-level", "warn"])


def haproxy(work, balance):
    path = os.path.join(work, "haproxy.cfg")
    servers = "".join(f"  server u{i} 127.0.0.1:{port}\n" for i, port in enumerate(PORTS))
    with open(path, "w") as f:
        f.write(
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n"
            "  timeout server 30s\n  http-reuse always\n"
            f"frontend fe\n  bind 127.0.0.1:{PROXY_PORT}\n  default_backend be\n"
            f"backend be\n  balance {balance}\n{servers}"
        )
    return subprocess.Popen(["haproxy", "-db", "-f", path])


def nginx(work):
    path = os.path.join(work, "nginx.conf")
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in PORTS)
    with open(path, "w") as f:
        f.write(
            f"daemon off;\nmaster_process off;\nerror_log stderr error;\npid {work}/nginx.pid;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n  access_log off;\n  upstream pool {{\n    least_conn;\n{servers}"
            "    keepalive 64;\n  }\n"
            f"  server {{\n    listen 127.0.0.1:{PROXY_PORT};\n    location / {{\n"
            "      proxy_pass http://pool;\n      proxy_http_version 1.1;\n"
            '      proxy_set_header Connection "";\n    }\n  }\n}\n'
        )
    return subprocess.Popen(["nginx", "-p", work, "-c", path])


async def measure(name, start):
    process = start()
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_port, PROXY_PORT)
        samples = []
        now = time.monotonic()
        await asyncio.gather(
            *(client(samples, now + WARM_UP + RUN, now + WARM_UP) for _ in range(CLIENTS))
        )
        latencies = sorted(s[0] for s in samples)
        slow = sum(1 for s in samples if s[1] == "u3") / len(samples)
        pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
        return (name, len(samples), f"{pick(0.5):.1f} ms", f"{pick(0.99):.1f} ms", f"{slow:.1%}")
    finally:
        process.terminate()
        process.wait()
        await asyncio.sleep(0.3)


async def main():
    binary = sys.argv[1]
    servers = [await serve(i) for i in range(len(PORTS))]
    work = tempfile.mkdtemp()
    rows = [
        await measure("switchyard weighted_round_robin", lambda: switchyard(work, binary, "weighted_round_robin")),
        await measure("switchyard least_connections", lambda: switchyard(work, binary, "least_connections")),
        await measure("switchyard least_latency", lambda: switchyard(work, binary, "least_latency")),
        await measure("haproxy leastconn", lambda: haproxy(work, "leastconn")),
        await measure("haproxy random(2)", lambda: haproxy(work, "random(2)")),
        await measure("nginx least_conn", lambda: nginx(work)),
    ]
    for server in servers:
        server.close()
    print("| setup | requests | p50 | p99 | slow backend's share |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


asyncio.run(main())
