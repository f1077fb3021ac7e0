"""Admission side by side: one gunicorn backend with 4 sync workers, each answer taking 20 ms
(about 200 requests a second), offered three times that (600 a second, open loop, a new
connection per request, for 6 s) through Switchyard and HAProxy with the same limit (4 in
flight), queue (50) and queue timeout (500 ms), and through Switchyard without admission.
Prints per setup the answers by status, the admitted requests' p50 and p99, the shed ones'
(503) p50 and p99, whether every 503 carried Retry-After, and requests that got no answer
within 10 s.

Run by benches/admission.sh, which builds Switchyard and passes its path.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import time

from loopback import wait_port

BACKEND_PORT = 18541
PROXY_PORT = 18540
RATE = 600
RUN = 6.0
ANSWER_WITHIN = 10.0

APP = """
import time

def app(environ, start_response):
    time.sleep(0.02)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"""


async def one(results):
    start = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", PROXY_PORT), ANSWER_WITHIN
        )
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), ANSWER_WITHIN)
        writer.close()
        head = answer.split(b"\r\n\r\n", 1)[0].decode(errors="replace").lower()
        status = int(head.split(" ", 2)[1])
        results.append((status, time.monotonic() - start, "\r\nretry-after:" in head))
    except (OSError, asyncio.TimeoutError, ValueError, IndexError):
        results.append((0, time.monotonic() - start, False))


async def offer(results):
    tasks = []
    begin = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - begin) < RUN:
        due = int(elapsed * RATE) + 1
        while n < due:
            tasks.append(asyncio.create_task(one(results)))
            n += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)


def switchyard(work, binary, admission):
    path = os.path.join(work, "switchyard.toml")
    with open(path, "w") as f:
        f.write(
            f'[[listeners]]\nname = "bench"\nbind = "127.0.0.1:{PROXY_PORT}"\n\n'
            "[admin]\nenabled = false\n\n[access_log]\nenabled = false\n\n"
            "[reload]\nwatch = false\n\n[timeouts]\nresponse_header = \"30s\"\n\n"
            '[[routes]]\nname = "all"\npool = "pool"\n\n'
            f'[[pools]]\nname = "pool"\nretries = 0\n{admission}\n'
            f'[[pools.backends]]\nname = "gunicorn"\naddress = "127.0.0.1:{BACKEND_PORT}"\n'
        )
    return subprocess.Popen([binary, "run", "--workers", "1", "--config", path, "--log-level", "warn"])


def haproxy(work):
    path = os.path.join(work, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n"
            "  timeout server 30s\n  timeout queue 500ms\n"
            f"frontend fe\n  bind 127.0.0.1:{PROXY_PORT}\n  default_backend be\n"
            f"backend be\n  server gunicorn 127.0.0.1:{BACKEND_PORT} maxconn 4 maxqueue 50\n"
        )
    return subprocess.Popen(["haproxy", "-db", "-f", path])


def quantile(values, q):
    if not values:
        return "–"
    values = sorted(values)
    return f"{values[min(len(values) - 1, int(q * len(values)))] * 1000:.1f} ms"


async def measure(name, start):
    process = start()
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_port, PROXY_PORT)
        results = []
        await offer(results)
        admitted = [t for s, t, _ in results if s == 200]
        shed = [t for s, t, _ in results if s == 503]
        told = all(r for s, _, r in results if s == 503)
        other = sum(1 for s, _, _ in results if s not in (0, 200, 503))
        lost = sum(1 for s, _, _ in results if s == 0)
        return (
            name, len(results), len(admitted), len(shed), other, lost,
            quantile(admitted, 0.5), quantile(admitted, 0.99),
            quantile(shed, 0.5), quantile(shed, 0.99), "yes" if told else "NO",
        )
    finally:
        process.terminate()
        process.wait()
        await asyncio.sleep(1.0)


async def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp()
    with open(os.path.join(work, "app.py"), "w") as f:
        f.write(APP)
    backend = subprocess.Popen(
        ["gunicorn", "--chdir", work, "-w", "4", "-b", f"127.0.0.1:{BACKEND_PORT}",
         "--backlog", "4096", "--log-level", "warning", "app:app"]
    )
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_port, BACKEND_PORT)
        limits = "[pools.admission]\nmax_in_flight = 4\nqueue = 50\nqueue_timeout = \"500ms\"\n"
        adaptive = (
            "[pools.admission]\nmax_in_flight = 32\nadaptive = true\nqueue = 50\n"
            "queue_timeout = \"500ms\"\n"
        )
        # Without admission last: it leaves the backend a backlog of abandoned connections
        # that would slow the start of the next setup.
        rows = [
            await measure("switchyard max_in_flight 4, queue 50, 500 ms", lambda: switchyard(work, binary, limits)),
            await measure("switchyard adaptive (≤ 32), queue 50, 500 ms", lambda: switchyard(work, binary, adaptive)),
            await measure("haproxy maxconn 4, maxqueue 50, timeout queue 500ms", lambda: haproxy(work)),
            await measure("switchyard, no admission", lambda: switchyard(work, binary, "")),
        ]
    finally:
        backend.terminate()
        backend.wait()
    print("| setup | sent | 200 | 503 | other | no answer | admitted p50 | admitted p99 | shed p50 | shed p99 | Retry-After on every 503 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


asyncio.run(main())
