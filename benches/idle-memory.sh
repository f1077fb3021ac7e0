#!/usr/bin/env bash
# Resident memory of a proxy holding idle client connections: Switchyard against NGINX, each as
# one worker in front of the same upstream, over plain HTTP/1.1 (10,000 connections), HTTP/1.1
# over TLS 1.3, h2c and h2 over TLS (2,000 each: the handshakes are the client's slow part), and
# WebSocket tunnels (2,000: each holds a client and an upstream connection in the proxy).
#
# Method: start the proxy, read its RSS (VmRSS of the serving process), open the connections
# from one client process, send one request on each and read the answer, keep them all open and
# idle for 16 s (long enough for Switchyard to park idle HTTP/1.1 connections), read the RSS
# again. Reported: RSS before, with the connections open, and the growth per connection. The
# plain and TLS rows are measured twice for Switchyard: as the binary runs by default, and as
# packaged (MIMALLOC_PURGE_DELAY=0, see the Dockerfile). Loopback only; the client closes
# everything and exits by itself.
#
# Usage: benches/idle-memory.sh   (ROWS="h1 tls h2c h2 ws", CONNECTIONS=10000, TLS_CONNECTIONS=2000,
#        WS_CONNECTIONS=2000)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

CONNECTIONS=${CONNECTIONS:-10000}
TLS_CONNECTIONS=${TLS_CONNECTIONS:-2000}
WS_CONNECTIONS=${WS_CONNECTIONS:-2000}
# Which kinds of connection to measure (all by default).
ROWS=${ROWS:-h1 tls h2c h2 ws}
require nginx:nginx-light
# PROFILE=release measures the quick start's build; dist (fat LTO) is what ships.
PROFILE=${PROFILE:-dist}
cargo build --profile "$PROFILE" --quiet
ulimit -n $((CONNECTIONS * 2 + 1000)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

start_work

cat >"$work/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $work/upstream.pid; error_log $work/upstream-error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:18281; location / { return 200 "ok\n"; } } }
CONF
cat >"$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx-error.log;
worker_rlimit_nofile $((CONNECTIONS * 2 + 1000));
events { worker_connections $((CONNECTIONS + 1000)); }
http {
  access_log off; keepalive_timeout 300s; keepalive_requests 1000000;
  upstream pool { server 127.0.0.1:18281; keepalive 16; }
  server { listen 127.0.0.1:18282; location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server {
    listen 127.0.0.1:18288;
    location / {
      proxy_pass http://127.0.0.1:18287; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection "upgrade";
      proxy_read_timeout 300s;
    }
  }
  server { listen 127.0.0.1:18284 http2; location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server {
    listen 127.0.0.1:18285 ssl http2;
    ssl_certificate $PWD/certs/localhost.pem;
    ssl_certificate_key $PWD/certs/localhost-key.pem;
    location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
# A 30 s header timeout: idle HTTP/1.1 connections are parked 7.5 to 15 s after their request
# (a quarter and a half of it), and closed 30 s after it.
TLS_PORT=18286 switchyard_config 18283 "enabled = false" 18281 |
  sed 's/^request_header = "300s"/request_header = "30s"/' >"$work/switchyard.toml"
switchyard_config 18289 "enabled = false" 18287 >"$work/switchyard-ws.toml"

# The WebSocket upstream: answers each handshake with 101, then keeps the connection, idle.
cat >"$work/ws-upstream.py" <<'PY'
import asyncio, base64, hashlib, sys
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
async def serve(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return  # the script's own check that the port is open
    key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    await writer.drain()
    await reader.read()  # until the proxy closes the tunnel
    writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY

cat >"$work/client.py" <<'PY'
# One GET on each of `count` connections to `port`, then idle until told to close them. `mode`:
# h1 (HTTP/1.1), tls (HTTP/1.1 over TLS), h2c (HTTP/2, prior knowledge), h2 (HTTP/2 over TLS),
# ws (a WebSocket handshake, then the tunnel left idle).
import asyncio, ssl, sys
port, count, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
# HPACK: :method GET, :scheme http, :path /, :authority "idle" (literal).
GET = b"\x82\x86\x84\x41\x04idle"
HEADERS = len(GET).to_bytes(3, "big") + b"\x01\x05\x00\x00\x00\x01" + GET
def context(alpn):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols([alpn])
    return ctx
async def h1(reader, writer):
    writer.write(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    await reader.readexactly(length)
async def h2(reader, writer):
    writer.write(PREFACE + SETTINGS + HEADERS)
    await writer.drain()
    while True:
        head = await reader.readexactly(9)
        length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
        stream = int.from_bytes(head[5:], "big") & 0x7FFFFFFF
        await reader.readexactly(length)
        if kind == 4 and not flags & 1:
            writer.write(SETTINGS_ACK)
        if stream == 1 and flags & 1:
            return
async def ws(reader, writer):
    writer.write(b"GET / HTTP/1.1\r\nHost: idle\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
TLS = {"tls": context("http/1.1"), "h2": context("h2")}.get(mode)
async def one(sem):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=TLS)
        await {"h1": h1, "tls": h1, "ws": ws}.get(mode, h2)(reader, writer)
        return writer
async def main():
    sem = asyncio.Semaphore(200)
    writers = await asyncio.gather(*(one(sem) for _ in range(count)))
    print("open", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for w in writers:
        w.close()
asyncio.run(main())
PY
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

nginx -p "$work" -c "$work/upstream.conf" & pids+=($!)
wait_port 18281
python3 "$work/ws-upstream.py" 18287 & pids+=($!)
wait_port 18287

measure() { # name port pid mode connections
  local before after
  before=$(rss_kib "$3")
  coproc CLIENT { python3 "$work/client.py" "$2" "$5" "$4"; }
  read -r line <&"${CLIENT[0]}"
  [ "$line" = open ] || { echo "client failed" >&2; exit 1; }
  # Idle: Switchyard parks HTTP/1.1 connections 7.5 to 15 s after their request (above), so
  # 16 s covers the last one opened, and the first is still short of its 30 s limit.
  sleep 16
  after=$(rss_kib "$3")
  echo >&"${CLIENT[1]}"
  wait "$CLIENT_PID" 2>/dev/null || true
  printf '| %s | %s | %s | %d MiB | %d MiB | %.1f KiB |\n' "$1" "$4" "$5" $((before / 1024)) $((after / 1024)) "$(awk -v a="$after" -v b="$before" -v n="$5" 'BEGIN {print (a - b) / n}')"
}

# Each row on a freshly started proxy, so none inherits another's memory.
nginx_row() { # port mode connections
  nginx -p "$work" -c "$work/nginx.conf" & local master=$!
  pids+=("$master")
  wait_port "$1"
  sleep 0.5
  measure nginx "$1" "$(pgrep -P "$master" | head -1)" "$2" "$3"
  kill "$master"
  wait "$master" 2>/dev/null || true
}
switchyard_row() { # port mode connections [config]
  "target/$PROFILE/switchyard" run --workers 1 --config "$work/${4:-switchyard}.toml" --log-level warn & local pid=$!
  pids+=("$pid")
  wait_port "$1"
  measure "${NAME:-switchyard}" "$1" "$pid" "$2" "$3"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}
# As packaged (Dockerfile, conf/systemd): mimalloc returns each freed page at once.
packaged_row() { # port mode connections [config]
  MIMALLOC_PURGE_DELAY=0 NAME="switchyard, packaged" switchyard_row "$@"
}

echo "| proxy | connections | count | RSS before | RSS with them open | per connection |"
echo "| --- | --- | ---: | ---: | ---: | ---: |"
want() { [[ " $ROWS " == *" $1 "* ]]; }
if want h1; then
  nginx_row 18282 h1 "$CONNECTIONS"
  switchyard_row 18283 h1 "$CONNECTIONS"
  packaged_row 18283 h1 "$CONNECTIONS"
fi
if want tls; then
  nginx_row 18285 tls "$TLS_CONNECTIONS"
  switchyard_row 18286 tls "$TLS_CONNECTIONS"
  packaged_row 18286 tls "$TLS_CONNECTIONS"
fi
if want h2c; then
  nginx_row 18284 h2c "$TLS_CONNECTIONS"
  switchyard_row 18283 h2c "$TLS_CONNECTIONS"
fi
if want h2; then
  nginx_row 18285 h2 "$TLS_CONNECTIONS"
  switchyard_row 18286 h2 "$TLS_CONNECTIONS"
fi
if want ws; then
  nginx_row 18288 ws "$WS_CONNECTIONS"
  switchyard_row 18289 ws "$WS_CONNECTIONS" switchyard-ws
fi
