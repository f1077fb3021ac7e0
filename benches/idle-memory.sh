#!/usr/bin/env bash
# Resident memory of a proxy holding 10,000 idle keep-alive client connections: Switchyard
# against NGINX, each as one worker in front of the same upstream.
#
# Method: start the proxy, read its RSS (VmRSS of the serving process), open $CONNECTIONS
# connections from one client process, send one request on each and read the answer, keep them
# all open and idle, read the RSS again. Reported: RSS before, with the connections open, and the
# growth per connection. Loopback only; the client closes everything and exits by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

CONNECTIONS=${CONNECTIONS:-10000}
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
}
CONF
switchyard_config 18283 "enabled = false" 18281 >"$work/switchyard.toml"

cat >"$work/client.py" <<'PY'
import asyncio, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
async def one(sem):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
        await reader.readexactly(length)
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

measure() { # name port pid
  local before after
  before=$(rss_kib "$3")
  coproc CLIENT { python3 "$work/client.py" "$2" "$CONNECTIONS"; }
  read -r line <&"${CLIENT[0]}"
  [ "$line" = open ] || { echo "client failed" >&2; exit 1; }
  sleep 1
  after=$(rss_kib "$3")
  echo >&"${CLIENT[1]}"
  wait "$CLIENT_PID" 2>/dev/null || true
  printf '| %s | %s | %d MiB | %d MiB | %.1f KiB |\n' "$1" "$CONNECTIONS" $((before / 1024)) $((after / 1024)) "$(awk -v a="$after" -v b="$before" -v n="$CONNECTIONS" 'BEGIN {print (a - b) / n}')"
}

echo "| proxy | idle connections | RSS before | RSS with them open | per connection |"
echo "| --- | ---: | ---: | ---: | ---: |"
nginx -p "$work" -c "$work/nginx.conf" & nginx_master=$!; pids+=($nginx_master)
wait_port 18282
worker=$(pgrep -P "$nginx_master" | head -1)
measure nginx 18282 "$worker"
kill "$nginx_master"
"target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard.toml" --log-level warn & pids+=($!)
wait_port 18283
measure switchyard 18283 "$!"
