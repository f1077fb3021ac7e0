"""Consistent hashing side by side: HAProxy (`balance hdr(X-Key)`, `hash-type consistent`,
`hash-balance-factor 125`) and Switchyard (`algorithm = "hash"`, `key = "header:X-Key"`,
`balance_factor = 125`, Maglev and ring), the same four upstreams (served here, each answering
`X-Upstream` and counting the requests it holds at once).

For each proxy:
- spread: 10,000 distinct keys, one request each: the largest backend's share over the mean;
- moved: one backend taken out (HAProxy: `set server ... state maint` on its stats socket;
  Switchyard: the admin API's drain): keys that changed backend, and how many of them were not
  the removed backend's;
- bounded load: 40 requests of one hot key at once, each held 300 ms upstream: the most any
  backend held at once (the bound allows ceil(1.25 x 40 / 4) = 13).

Run by benches/hashing.sh, which builds Switchyard and passes the programs' paths.
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

UPSTREAM_PORTS = [18501, 18502, 18503, 18504]
PROXY_PORT = 18510
ADMIN_PORT = 18511
HOLDING = {port: 0 for port in UPSTREAM_PORTS}
MOST = {port: 0 for port in UPSTREAM_PORTS}


async def serve(port):
    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                if path.startswith(b"/slow"):
                    HOLDING[port] += 1
                    MOST[port] = max(MOST[port], HOLDING[port])
                    await asyncio.sleep(0.3)
                    HOLDING[port] -= 1
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Upstream: u%d\r\n\r\nok"
                    % UPSTREAM_PORTS.index(port)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client left, or the benchmark is over
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)


async def request(port, path, key, conn=None):
    """GET `path` with `X-Key: key` over `conn` (reader, writer) or a new connection."""
    reader, writer = conn or await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-Key: {key}\r\n\r\n".encode()
    )
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    headers = dict(
        line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line
    )
    headers = {k.lower(): v for k, v in headers.items()}
    await reader.readexactly(int(headers.get("content-length", "0")))
    return headers.get("x-upstream"), (reader, writer)


async def owners(keys):
    conn = None
    found = []
    for key in keys:
        owner, conn = await request(PROXY_PORT, "/", key, conn)
        found.append(owner)
    conn[1].close()
    return found


def wait_port(port):
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"port {port} never answered")


def haproxy(work):
    socket = os.path.join(work, "haproxy.sock")
    config = os.path.join(work, "haproxy.cfg")
    servers = "".join(
        f"  server u{i} 127.0.0.1:{port}\n" for i, port in enumerate(UPSTREAM_PORTS)
    )
    with open(config, "w") as f:
        f.write(
            f"global\n  stats socket {socket} level admin\n"
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n"
            "  timeout server 30s\n"
            f"frontend fe\n  bind 127.0.0.1:{PROXY_PORT}\n  default_backend be\n"
            "backend be\n  balance hdr(X-Key)\n  hash-type consistent\n"
            f"  hash-balance-factor 125\n{servers}"
        )
    process = subprocess.Popen(["haproxy", "-db", "-f", config])

    def remove():
        subprocess.run(
            ["socat", "-", f"UNIX-CONNECT:{socket}"],
            input=b"set server be/u3 state maint\n",
            check=True,
            capture_output=True,
        )

    return process, remove


def switchyard(work, binary, table):
    config = os.path.join(work, f"switchyard-{table}.toml")
    backends = "".join(
        f'\n[[pools.backends]]\nname = "u{i}"\naddress = "127.0.0.1:{port}"\n'
        for i, port in enumerate(UPSTREAM_PORTS)
    )
    with open(config, "w") as f:
        f.write(
            f'[[listeners]]\nname = "bench"\nbind = "127.0.0.1:{PROXY_PORT}"\n\n'
            f'[admin]\nbind = "127.0.0.1:{ADMIN_PORT}"\n\n[access_log]\nenabled = false\n\n'
            '[reload]\nwatch = false\n\n'
            '[[routes]]\nname = "all"\npool = "pool"\n\n'
            '[[pools]]\nname = "pool"\nalgorithm = "hash"\n'
            f'hash = {{ key = "header:X-Key", balance_factor = 125, table = "{table}" }}\n'
            + backends
        )
    process = subprocess.Popen([binary, "run", "--config", config, "--log-level", "warn"])

    def remove():
        req = urllib.request.Request(
            f"http://127.0.0.1:{ADMIN_PORT}/api/pools/pool/backends/u3/drain",
            method="POST",
        )
        urllib.request.urlopen(req, timeout=5).read()

    return process, remove


async def measure(name, start):
    process, remove = start()
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_port, PROXY_PORT)
        keys = [f"user-{n}" for n in range(10_000)]
        before = await owners(keys)
        counts = {owner: before.count(owner) for owner in set(before)}
        spread = max(counts.values()) / (len(keys) / 4)
        for port in UPSTREAM_PORTS:
            MOST[port] = 0
        hot = [request(PROXY_PORT, "/slow", "hot") for _ in range(40)]
        await asyncio.gather(*hot)
        most = max(MOST.values())
        await asyncio.get_running_loop().run_in_executor(None, remove)
        await asyncio.sleep(0.5)
        after = await owners(keys)
        moved = sum(b != a for b, a in zip(before, after))
        others = sum(b != a and b != "u3" for b, a in zip(before, after))
        return {
            "proxy": name,
            "largest share / mean": round(spread, 3),
            "keys moved (of 10,000)": moved,
            "of them not u3's": others,
            "hot key: most held at once (bound 13)": most,
        }
    finally:
        process.terminate()
        process.wait()


async def main():
    binary = sys.argv[1]
    servers = [await serve(port) for port in UPSTREAM_PORTS]
    work = tempfile.mkdtemp()
    rows = [
        await measure("haproxy consistent", lambda: haproxy(work)),
        await measure("switchyard maglev", lambda: switchyard(work, binary, "maglev")),
        await measure("switchyard ring", lambda: switchyard(work, binary, "ring")),
    ]
    for server in servers:
        server.close()
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("| " + " | ".join("---" for _ in columns) + " |")
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    print(json.dumps(rows), file=open(os.path.join(work, "rows.json"), "w"))


asyncio.run(main())
