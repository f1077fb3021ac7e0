#!/usr/bin/env bash
# Rate limits side by side: NGINX `limit_req` and a Switchyard `rate_limit` with the same rule
# (50 r/s per client address, burst 10, refusals answered 429 at once), the same load (10
# clients from one address for 10 s, each sending as fast as it is answered) and the same
# upstreams. Prints admitted (200) and refused (429, 503) counts per proxy: the rule allows
# 50 × 10 + 11 = 511.
#
# Usage: benches/limits.sh   (SECONDS_RUN=10, CLIENTS=10)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

SECONDS_RUN=${SECONDS_RUN:-10}
CLIENTS=${CLIENTS:-10}
PORT=18394

require nginx:nginx-light curl:curl
cargo build --release --quiet
start_work

upstreams_conf "$work" 18381 18382 >"$work/upstreams.conf"
HTTP_EXTRA='limit_req_zone $binary_remote_addr zone=clients:10m rate=50r/s;
  limit_req zone=clients burst=10 nodelay;
  limit_req_status 429;' \
  nginx_proxy_conf "$work" $PORT 18381 18382 >"$work/nginx.conf"
ROUTE_EXTRA='[[routes.rate_limit]]
rate = "50/s"
burst = 10' \
  switchyard_config $PORT "enabled = false" 18381 18382 >"$work/switchyard.toml"

nginx -p "$work" -c "$work/upstreams.conf" &
pids+=($!)
wait_port 18381

run() { # name command...
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
  # Let the probes' admissions age out of the burst.
  sleep 1
  python3 - "$PORT" "$SECONDS_RUN" "$CLIENTS" "$name" <<'PY'
import collections, http.client, sys, threading, time
port, seconds, clients, name = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
counts = collections.Counter()
lock = threading.Lock()
end = time.monotonic() + seconds
def client():
    conn = http.client.HTTPConnection("127.0.0.1", port)
    mine = collections.Counter()
    while time.monotonic() < end:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        mine[response.status] += 1
    with lock:
        counts.update(mine)
threads = [threading.Thread(target=client) for _ in range(clients)]
for t in threads: t.start()
for t in threads: t.join()
print(f"| {name} | {counts[200]} | {counts[429]} | {counts[503]} | {sum(counts.values()) - counts[200] - counts[429] - counts[503]} |")
PY
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

echo "| proxy | admitted (200) | refused (429) | 503 | other |"
echo "| --- | ---: | ---: | ---: | ---: |"
run nginx nginx -p "$work" -c "$work/nginx.conf"
run switchyard target/release/switchyard run --config "$work/switchyard.toml" --log-level warn
