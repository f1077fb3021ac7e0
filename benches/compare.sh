#!/usr/bin/env bash
# Side-by-side comparison of Switchyard, NGINX and HAProxy as load-balancing proxies.
#
# Method
# - Two fixed upstreams: one NGINX (1 worker) serving `return 200` on two ports, pinned to core 0
#   together with the load generator.
# - Each proxy in turn, pinned to core 1, balancing round-robin over the same two upstreams with
#   upstream keep-alive: NGINX (1 worker, `keepalive 64`), HAProxy (`nbthread 1`,
#   `http-reuse always`), Switchyard (`--workers 1`, metrics on, JSON access log to a file).
#   NGINX and HAProxy run without access logs.
# - Load: `wrk -t1 -c64` (HTTP/1.1 keep-alive, small GET) for $DURATION seconds after a 2 s warm-up,
#   then `h2load -c64 -m10` over h2c (prior knowledge) for $H2_REQUESTS requests.
# - Reported per proxy: requests/s, p50/p99 latency (wrk), errors (non-2xx + socket errors),
#   proxy CPU time per request from /proc/<pid>/stat (user and system, divided by the requests
#   completed in the run), and system calls per request from a separate short run under
#   `strace -c -f` (attached to every thread of the proxy).
# - TLS, for NGINX and Switchyard (access log on) with the same ECDSA P-256 certificate (certs/),
#   each on its own HTTPS port: full TLS 1.3 handshakes (`openssl s_time -new -tls1_3 -www /`:
#   a new connection, a full handshake and one proxied request each, for $TLS_SECONDS s), resumed
#   TLS 1.3 handshakes (`s_time -reuse`, the same with the session resumed), each reported per
#   CPU-second of the proxy; and HTTPS keep-alive (`wrk -t1 -c64` over TLS, $DURATION s): CPU
#   per request. s_time runs one connection at a time, so its rates are the client's; the
#   proxy's CPU per handshake is the figure that counts.
# - Compression, for NGINX's gzip and Switchyard's gzip and zstd (access logs off): `wrk -t1
#   -c$CONNS` with `Accept-Encoding` fetching a 10 KB JSON document for $DURATION s, each proxy
#   compressing every response (zlib level 6 for both gzips, zstd level 3). Reported: the
#   proxy's CPU per response and the JSON bytes it compressed per CPU-second of the proxy
#   (everything it did for the request included, as a user would pay for it), and the size of
#   one compressed response.
# - HTTP/3, for Caddy 2.6 (Debian's; GOMAXPROCS=1, no access log) and Switchyard (access log on)
#   with the same certificate, each reverse proxying to the same upstreams: benches/h3_load.rs
#   (quinn and h3; h2load has no HTTP/3 in Debian 12) keeps $H3_CONNS connections with 10
#   requests in flight each for $DURATION s (requests/s and the proxy's CPU per request), then
#   opens new connections with full handshakes, one GET each, 4 at a time for $TLS_SECONDS s
#   (handshakes per CPU-second of the proxy).
# - Ratios are against NGINX (Caddy for HTTP/3). Everything runs on loopback, bounded in time,
#   and stops by itself.
#
# Usage: benches/compare.sh   (tune with DURATION=10 H2_REQUESTS=200000 STRACE_SECONDS=3 CONNS=64
#        TLS_SECONDS=10, PROXIES="nginx haproxy switchyard switchyard-nolog" to pick which to
#        run, TLS_PROXIES="nginx switchyard" for the TLS runs and GZIP_PROXIES="nginx-gzip
#        switchyard-gzip switchyard-zstd" for the compression runs and H3_PROXIES="caddy
#        switchyard" for the HTTP/3 runs; set any empty to skip it)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

DURATION=${DURATION:-10}
H2_REQUESTS=${H2_REQUESTS:-200000}
STRACE_SECONDS=${STRACE_SECONDS:-3}
TLS_SECONDS=${TLS_SECONDS:-10}
TLS_PROXIES=${TLS_PROXIES-nginx switchyard}
GZIP_PROXIES=${GZIP_PROXIES-nginx-gzip switchyard-gzip switchyard-zstd}
H3_PROXIES=${H3_PROXIES-caddy switchyard}
H3_CONNS=${H3_CONNS:-16}
CONNS=${CONNS:-64}
LOAD_CORE=0
PROXY_CORE=1

require nginx:nginx-light haproxy:haproxy wrk:wrk h2load:nghttp2-client strace:strace openssl:openssl curl:curl
# PROFILE=release measures the quick start's build; dist (fat LTO) is what ships.
PROFILE=${PROFILE:-dist}
cargo build --profile "$PROFILE" --quiet
if [ -n "$H3_PROXIES" ]; then
  require caddy:caddy
  h3_load=$(cargo build --profile "$PROFILE" --bench h3_load --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*h3_load[^"]*\)".*/\1/p' | tail -1)
fi

start_work
ulimit -n 65536 2>/dev/null || true
hz=$(getconf CLK_TCK)

upstreams_conf "$work" 18081 18082 >"$work/upstreams.conf"
write_10k_json "$work"
HTTP_EXTRA=$NGINX_GZIP nginx_proxy_conf "$work" 18093 18081 18082 >"$work/nginx-gzip.conf"
ROUTE_EXTRA='compress = ["zstd", "gzip"]' \
  switchyard_config 18094 "enabled = false" 18081 18082 >"$work/switchyard-compress.toml"
TLS_PORT=18290 nginx_proxy_conf "$work" 18090 18081 18082 18190 >"$work/nginx.conf"
haproxy_conf 18091 18081 18082 18191 >"$work/haproxy.cfg"
TLS_PORT=18292 switchyard_config 18092 "path = \"$work/switchyard-access.log\"" 18081 18082 >"$work/switchyard.toml"
switchyard_config 18092 "enabled = false" 18081 18082 >"$work/switchyard-nolog.toml"
H3=1 TLS_PORT=18296 switchyard_config 18095 "path = \"$work/switchyard-h3.log\"" 18081 18082 >"$work/switchyard-h3.toml"
cat >"$work/Caddyfile" <<CONF
{
	admin off
	auto_https off
	servers :18297 {
		protocols h1 h2 h3
	}
}
https://localhost:18297 {
	tls $PWD/certs/localhost.pem $PWD/certs/localhost-key.pem
	reverse_proxy 127.0.0.1:18081 127.0.0.1:18082 {
		lb_policy round_robin
	}
}
CONF


taskset -c $LOAD_CORE nginx -p "$work" -c "$work/upstreams.conf" &
pids+=($!)
wait_port 18081

cpu() { # user and system ticks of every thread of $1
  awk '{print $14, $15}' "/proc/$1/stat"
}

declare -A result
measure() { # name pid h1_port h2_port
  local name=$1 pid=$2 h1=$3 h2=$4
  taskset -c $LOAD_CORE wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$h1/" >/dev/null
  read -r u0 s0 < <(cpu "$pid")
  local out
  out=$(taskset -c $LOAD_CORE wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$h1/")
  read -r u1 s1 < <(cpu "$pid")
  echo "$out" >"$work/$name-wrk.txt"
  local requests rps p50 p99 non2xx sockerr
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  sockerr=$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' <<<"$out")
  result[$name,rps]=$rps
  result[$name,p50]=$p50
  result[$name,p99]=$p99
  result[$name,errors]=$(( ${non2xx:-0} + ${sockerr:-0} ))
  result[$name,user]=$(awk -v t=$((u1 - u0)) -v r="$requests" -v hz="$hz" 'BEGIN {printf "%.2f", t * 1e6 / hz / r}')
  result[$name,sys]=$(awk -v t=$((s1 - s0)) -v r="$requests" -v hz="$hz" 'BEGIN {printf "%.2f", t * 1e6 / hz / r}')
  result[$name,cpu]=$(awk -v t=$((u1 - u0 + s1 - s0)) -v r="$requests" -v hz="$hz" 'BEGIN {printf "%.2f", t * 1e6 / hz / r}')

  # System calls per request: a short run with strace attached to every thread.
  local tids
  tids=$(ls "/proc/$pid/task" | paste -sd, -)
  strace -c -f -p "$tids" -o "$work/$name-strace.txt" 2>/dev/null &
  local strace_pid=$!
  sleep 1
  out=$(taskset -c $LOAD_CORE wrk -t1 -c"$CONNS" -d"${STRACE_SECONDS}s" "http://127.0.0.1:$h1/")
  kill -INT $strace_pid
  wait $strace_pid 2>/dev/null || true
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  local calls
  calls=$(awk '/^[ -]*[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+ +[0-9]* *total$/ {print $4} $NF == "total" {c = $4} END {if (c) print c}' "$work/$name-strace.txt" | tail -1)
  result[$name,syscalls]=$(awk -v c="${calls:-0}" -v r="$requests" 'BEGIN {printf "%.2f", c / r}')

  # h2c
  read -r u0 s0 < <(cpu "$pid")
  out=$(taskset -c $LOAD_CORE h2load -n "$H2_REQUESTS" -c "$CONNS" -m 10 -t 1 "http://127.0.0.1:$h2/" 2>&1)
  read -r u1 s1 < <(cpu "$pid")
  echo "$out" >"$work/$name-h2load.txt"
  result[$name,h2rps]=$(awk '/^finished in/ {print $4}' <<<"$out")
  local done
  done=$(awk '/^requests:/ {print $8}' <<<"$out")
  result[$name,h2fail]=$(awk '/^requests:/ {print $10 + $12}' <<<"$out")
  result[$name,h2cpu]=$(awk -v t=$((u1 - u0 + s1 - s0)) -v r="${done:-1}" -v hz="$hz" 'BEGIN {printf "%.2f", t * 1e6 / hz / r}')
  result[$name,h2mean]=$(awk '/^time for request:/ {print $6}' <<<"$out")
}

per_cpu_second() { # count ticks: count per CPU-second
  awk -v c="${1:-0}" -v t="$2" -v hz="$hz" 'BEGIN {if (t <= 0) print "-"; else printf "%.0f", c * hz / t}'
}

tls_measure() { # name pid port
  local name=$1 pid=$2 port=$3 mode out u0 s0 u1 s1 conns requests
  for mode in new reuse; do
    read -r u0 s0 < <(cpu "$pid")
    out=$(taskset -c $LOAD_CORE openssl s_time -connect "127.0.0.1:$port" -$mode -tls1_3 \
      -time "$TLS_SECONDS" -www / 2>&1 </dev/null)
    read -r u1 s1 < <(cpu "$pid")
    echo "$out" >"$work/$name-s_time-$mode.txt"
    conns=$(awk '/connections in [0-9]+ real seconds/ {c = $1} END {print c}' <<<"$out")
    result[$name,tls_$mode]=$(per_cpu_second "$conns" $((u1 - u0 + s1 - s0)))
    result[$name,tls_${mode}_count]=$conns
  done
  # s_time prints `r` for each resumed connection and `*` for each full one.
  result[$name,tls_resumed]=$(grep -E '^[r*]+$' "$work/$name-s_time-reuse.txt" | tr -cd 'r' | wc -c)

  taskset -c $LOAD_CORE wrk -t1 -c"$CONNS" -d2s "https://127.0.0.1:$port/" >/dev/null
  read -r u0 s0 < <(cpu "$pid")
  out=$(taskset -c $LOAD_CORE wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "https://127.0.0.1:$port/")
  read -r u1 s1 < <(cpu "$pid")
  echo "$out" >"$work/$name-wrk-https.txt"
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  result[$name,tls_rps]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  result[$name,tls_p99]=$(awk '$1 == "99%" {print $2}' <<<"$out")
  result[$name,tls_cpu]=$(awk -v t=$((u1 - u0 + s1 - s0)) -v r="$requests" -v hz="$hz" 'BEGIN {printf "%.2f", t * 1e6 / hz / r}')
}

gzip_measure() { # name pid port encoding
  local name=$1 pid=$2 port=$3 encoding=$4 out u0 s0 u1 s1 requests size
  local url="http://127.0.0.1:$port/10k.json"
  size=$(curl -s -H "Accept-Encoding: $encoding" "$url" | wc -c)
  taskset -c $LOAD_CORE wrk -t1 -c"$CONNS" -d2s -H "Accept-Encoding: $encoding" "$url" >/dev/null
  read -r u0 s0 < <(cpu "$pid")
  out=$(taskset -c $LOAD_CORE wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Accept-Encoding: $encoding" "$url")
  read -r u1 s1 < <(cpu "$pid")
  echo "$out" >"$work/$name-wrk-gzip.txt"
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  result[$name,gz_rps]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  result[$name,gz_errors]=$(awk -F'[ ,]+' '/Non-2xx/ {n = $NF} /Socket errors/ {s = $4+$6+$8+$10} END {print n + s}' <<<"$out")
  result[$name,gz_cpu]=$(awk -v t=$((u1 - u0 + s1 - s0)) -v r="$requests" -v hz="$hz" 'BEGIN {printf "%.2f", t * 1e6 / hz / r}')
  result[$name,gz_mb]=$(awk -v t=$((u1 - u0 + s1 - s0)) -v r="$requests" -v b="$(wc -c <"$work/10k.json")" -v hz="$hz" \
    'BEGIN {if (t <= 0) print "-"; else printf "%.1f", r * b / (t / hz) / 1e6}')
  result[$name,gz_size]=$size
}

h3_measure() { # name pid port
  local name=$1 pid=$2 port=$3 out u0 s0 u1 s1
  read -r u0 s0 < <(cpu "$pid")
  out=$(taskset -c $LOAD_CORE "$h3_load" requests "127.0.0.1:$port" "localhost:$port" / "$H3_CONNS" 10 "$DURATION")
  read -r u1 s1 < <(cpu "$pid")
  echo "$out" >"$work/$name-h3-requests.txt"
  local requests=${out#requests=}
  requests=${requests%% *}
  result[$name,h3_rps]=$(awk -v r="$requests" -v d="$DURATION" 'BEGIN {printf "%.0f", r / d}')
  result[$name,h3_failed]=${out##*failed=}
  result[$name,h3_cpu]=$(awk -v t=$((u1 - u0 + s1 - s0)) -v r="${requests:-1}" -v hz="$hz" 'BEGIN {printf "%.2f", t * 1e6 / hz / (r ? r : 1)}')
  read -r u0 s0 < <(cpu "$pid")
  out=$(taskset -c $LOAD_CORE "$h3_load" handshakes "127.0.0.1:$port" "localhost:$port" / 4 1 "$TLS_SECONDS")
  read -r u1 s1 < <(cpu "$pid")
  echo "$out" >"$work/$name-h3-handshakes.txt"
  local handshakes=${out#handshakes=}
  handshakes=${handshakes%% *}
  result[$name,h3_hs]=$(per_cpu_second "$handshakes" $((u1 - u0 + s1 - s0)))
  result[$name,h3_hs_failed]=${out##*failed=}
}

run_proxy() { # name h1 h2 command...
  local name=$1 h1=$2 h2=$3
  shift 3
  taskset -c $PROXY_CORE "$@" >"$work/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  wait_port "$h1"
  # NGINX serves from its worker process, not the master.
  local serving=$pid
  if [[ $name == nginx* ]]; then
    for _ in $(seq 50); do serving=$(pgrep -P "$pid" | head -1) && [ -n "$serving" ] && break; sleep 0.1; done
  fi
  case $name in
    *-h3) h3_measure "${name%-h3}" "$serving" "$h1" ;;
    *-gzip) gzip_measure "$name" "$serving" "$h1" gzip ;;
    *-zstd) gzip_measure "$name" "$serving" "$h1" zstd ;;
    *) measure "$name" "$serving" "$h1" "$h2" ;;
  esac
  if [[ " $TLS_PROXIES " == *" $name "* ]]; then
    tls_measure "$name" "$serving" "${tls_port[$name]}"
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

declare -A tls_port=([nginx]=18290 [switchyard]=18292)
PROXIES=${PROXIES:-nginx haproxy switchyard switchyard-nolog}
for name in $PROXIES; do
  case $name in
    nginx) run_proxy nginx 18090 18190 nginx -p "$work" -c "$work/nginx.conf" ;;
    haproxy) run_proxy haproxy 18091 18191 haproxy -f "$work/haproxy.cfg" ;;
    switchyard) run_proxy switchyard 18092 18092 "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard.toml" --log-level warn ;;
    switchyard-nolog) run_proxy switchyard-nolog 18092 18092 "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-nolog.toml" --log-level warn ;;
  esac
done
for name in $GZIP_PROXIES; do
  case $name in
    nginx-gzip) run_proxy nginx-gzip 18093 - nginx -p "$work" -c "$work/nginx-gzip.conf" ;;
    switchyard-gzip | switchyard-zstd) run_proxy "$name" 18094 - "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-compress.toml" --log-level warn ;;
  esac
done

for name in $H3_PROXIES; do
  case $name in
    caddy) GOMAXPROCS=1 run_proxy caddy-h3 18297 - caddy run --config "$work/Caddyfile" --adapter caddyfile ;;
    switchyard) run_proxy switchyard-h3 18296 - "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-h3.toml" --log-level warn ;;
  esac
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b}'; }
echo
echo "## $(date -u +%Y-%m-%d) — $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
echo
echo "wrk -t1 -c$CONNS, ${DURATION}s, small GET over HTTP/1.1 keep-alive; h2load -c$CONNS -m10 over h2c."
echo
echo "| proxy | req/s | p50 | p99 | errors | CPU µs/req (user + sys) | syscalls/req | h2c req/s | h2c CPU µs/req | h2c failed |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for name in $PROXIES; do
  echo "| $name | ${result[$name,rps]} | ${result[$name,p50]} | ${result[$name,p99]} | ${result[$name,errors]} | ${result[$name,cpu]} (${result[$name,user]} + ${result[$name,sys]}) | ${result[$name,syscalls]} | ${result[$name,h2rps]} | ${result[$name,h2cpu]} | ${result[$name,h2fail]} |"
done
echo
[ -n "${result[nginx,cpu]:-}" ] && [ -n "${result[switchyard,cpu]:-}" ] && echo "Against NGINX: switchyard req/s ×$(ratio "${result[switchyard,rps]}" "${result[nginx,rps]}"), CPU/req ×$(ratio "${result[switchyard,cpu]}" "${result[nginx,cpu]}"), user CPU/req ×$(ratio "${result[switchyard,user]}" "${result[nginx,user]}"); HAProxy CPU/req ×$(ratio "${result[haproxy,cpu]:-}" "${result[nginx,cpu]}")."
echo "(switchyard-nolog: the same with the access log off. Raw outputs: $work)"
if [ -n "$TLS_PROXIES" ]; then
  echo
  echo "TLS (ECDSA P-256 certificate, TLS 1.3 handshakes by openssl s_time -www /, one at a time; HTTPS keep-alive by wrk -t1 -c$CONNS, ${DURATION}s):"
  echo
  echo "| proxy | full handshakes per CPU-second | resumed handshakes per CPU-second (resumed of all) | HTTPS req/s | HTTPS p99 | HTTPS CPU µs/req | HTTPS / HTTP CPU per request |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for name in $TLS_PROXIES; do
    echo "| $name | ${result[$name,tls_new]} | ${result[$name,tls_reuse]} (${result[$name,tls_resumed]} of ${result[$name,tls_reuse_count]}) | ${result[$name,tls_rps]} | ${result[$name,tls_p99]} | ${result[$name,tls_cpu]} | ×$(ratio "${result[$name,tls_cpu]}" "${result[$name,cpu]}") |"
  done
  if [ -n "${result[nginx,tls_cpu]:-}" ] && [ -n "${result[switchyard,tls_cpu]:-}" ]; then
    echo
    echo "Against NGINX: full handshakes per CPU-second ×$(ratio "${result[switchyard,tls_new]}" "${result[nginx,tls_new]}"), resumed ×$(ratio "${result[switchyard,tls_reuse]}" "${result[nginx,tls_reuse]}"); HTTPS keep-alive CPU/req ×$(ratio "${result[switchyard,tls_cpu]}" "${result[nginx,tls_cpu]}") (plain HTTP ×$(ratio "${result[switchyard,cpu]}" "${result[nginx,cpu]}"))."
  fi
fi
if [ -n "$GZIP_PROXIES" ]; then
  echo
  echo "Compression (a 10 KB JSON document, $(wc -c <"$work/10k.json") bytes, compressed on every response; wrk -t1 -c$CONNS, ${DURATION}s; access logs off):"
  echo
  echo "| proxy | req/s | errors | CPU µs/req | JSON MB compressed per CPU-second | compressed size |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for name in $GZIP_PROXIES; do
    echo "| $name | ${result[$name,gz_rps]} | ${result[$name,gz_errors]} | ${result[$name,gz_cpu]} | ${result[$name,gz_mb]} | ${result[$name,gz_size]} |"
  done
  if [ -n "${result[nginx-gzip,gz_mb]:-}" ] && [ -n "${result[switchyard-gzip,gz_mb]:-}" ]; then
    echo
    echo "Against NGINX's gzip: bytes per CPU-second ×$(ratio "${result[switchyard-gzip,gz_mb]}" "${result[nginx-gzip,gz_mb]}") (gzip), ×$(ratio "${result[switchyard-zstd,gz_mb]:-}" "${result[nginx-gzip,gz_mb]}") (zstd)."
  fi
fi
if [ -n "$H3_PROXIES" ]; then
  echo
  echo "HTTP/3 (benches/h3_load.rs: $H3_CONNS connections × 10 requests in flight for ${DURATION}s; then full handshakes, one GET each, 4 at a time for ${TLS_SECONDS}s):"
  echo
  echo "| proxy | req/s | failed | CPU µs/req | full handshakes per CPU-second | failed |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  for name in $H3_PROXIES; do
    echo "| $name | ${result[$name,h3_rps]:-} | ${result[$name,h3_failed]:-} | ${result[$name,h3_cpu]:-} | ${result[$name,h3_hs]:-} | ${result[$name,h3_hs_failed]:-} |"
  done
  if [ -n "${result[caddy,h3_cpu]:-}" ] && [ -n "${result[switchyard,h3_cpu]:-}" ]; then
    echo
    echo "Against Caddy: HTTP/3 req/s ×$(ratio "${result[switchyard,h3_rps]}" "${result[caddy,h3_rps]}"), CPU/req ×$(ratio "${result[switchyard,h3_cpu]}" "${result[caddy,h3_cpu]}"), full handshakes per CPU-second ×$(ratio "${result[switchyard,h3_hs]}" "${result[caddy,h3_hs]}")."
  fi
fi
