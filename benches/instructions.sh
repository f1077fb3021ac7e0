#!/usr/bin/env bash
# User-space instructions per proxied request, counted exactly by valgrind's callgrind: NGINX,
# HAProxy, the hyper floor (benches/hyper_floor.rs) and Switchyard. Unlike CPU time this count
# does not move with the machine's noise, so it shows small changes and where the time goes.
#
# Method
# - Two fixed upstreams (NGINX `return 200`, not under valgrind).
# - Each proxy in turn under `valgrind --tool=callgrind`, balancing round-robin over them with
#   upstream keep-alive, configured as in benches/compare.sh (NGINX with `master_process off` so
#   the serving process is the one valgrind runs).
# - `wrk -t1 -c16` for 3 s of warm-up, counters zeroed (`callgrind_control -z`), `wrk` for
#   $DURATION s, counters dumped: instructions of every thread of the proxy (kernel work, the
#   system calls, is not counted) divided by the requests wrk completed.
# - Under valgrind each proxy runs ~50x slower, so request rates here mean nothing.
# - `switchyard-policies` is `switchyard` with a route on `/api/` that strips it (so also sets
#   `X-Forwarded-Prefix`) and has three header rules (one a template), requested at
#   `/api/items`: what per-route policies cost. `switchyard-path` is `switchyard` requested at
#   the same path, its baseline (a path other than `/` costs http's parse of it, ~180).
# - `switchyard-ratelimit` is `switchyard` with one local rate limit by client address that
#   never refuses (every request still takes its cell); `switchyard-jwt` checks an ES256 bearer
#   token from a key file and copies its `sub` as a header (the same token on every request,
#   as a client sends it). `switchyard-hash` balances by consistent hashing of the client's
#   address (one key, so one backend while the 125 % load bound allows); `switchyard-latency`
#   balances by least latency; `switchyard-admission` has a pool queue its limits never
#   fill. `switchyard-sticky` has sticky sessions, wrk sending one session's cookie;
#   `switchyard-cookie` is `switchyard` sent the same cookie.
# - `switchyard-paused` is `switchyard` with wrk pausing 800 ms after each response on each
#   connection; `switchyard-parked` is the same with a 1 s header timeout, so each connection is
#   parked 250 to 500 ms into each pause and woken by its next request. The difference is what
#   parking and waking a connection costs (both include the runtime's own work of going idle
#   and waking between the few requests per second).
# - `nginx-gzip`, `switchyard-gzip` and `switchyard-zstd` (no access log) fetch a 10 KB JSON
#   document compressed (zlib level 6 for both gzips, zstd level 3).
# - `nginx-https` and `switchyard-https` (access log on) are the same over HTTPS keep-alive with
#   the certs/ ECDSA P-256 certificate (TLS 1.3, AES-256-GCM as both choose for wrk's OpenSSL).
# - `nginx-log` and `haproxy-log` are `nginx` and `haproxy` with an access log like ours: NGINX
#   a JSON line per request (`escape=json`) to a file, HAProxy `option httplog` to standard
#   output (a file). The HTTP/2 rows use these, so every HTTP/2 comparison has the log on:
#   `*-h2c` over h2c (prior knowledge), `*-h2` over TLS (h2 by ALPN), each loaded by
#   `h2load -c16 -m10` rather than wrk. `h2-floor` is `hyper-floor` serving HTTP/2 (h2c):
#   what hyper's HTTP/2 server and h2 cost before anything of ours. `h2-direct` serves the same
#   with h2's own server API, a connection's streams polled in its task (no task per stream):
#   what hyper's HTTP/2 layer adds to h2.
#
# Usage: benches/instructions.sh   (DURATION=8, PROXIES="nginx haproxy hyper-floor switchyard
#        switchyard-nolog switchyard-path switchyard-policies nginx-https switchyard-https"; a dump for
#        callgrind_annotate stays in
#        the printed directory)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

DURATION=${DURATION:-8}
PROXIES=${PROXIES:-nginx haproxy nginx-log haproxy-log hyper-floor switchyard switchyard-nolog switchyard-path switchyard-policies switchyard-ratelimit switchyard-jwt switchyard-hash switchyard-latency switchyard-admission switchyard-cookie switchyard-sticky nginx-https switchyard-https h2-floor nginx-h2c haproxy-h2c switchyard-h2c nginx-h2 haproxy-h2 switchyard-h2 nginx-gzip switchyard-gzip switchyard-zstd}
PORT=18392
TLS_PORT=18393
H2C_PORT=18394

require nginx:nginx-light haproxy:haproxy wrk:wrk h2load:nghttp2-client valgrind:valgrind curl:curl
# PROFILE=release measures the quick start's build; dist (fat LTO) is what ships.
PROFILE=${PROFILE:-dist}
cargo build --profile "$PROFILE" --quiet
if [[ " $PROXIES " =~ " "(hyper-floor|h2-floor|h2-direct)" " ]]; then
  floor=$(cargo build --profile "$PROFILE" --bench hyper_floor --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*hyper_floor[^"]*\)".*/\1/p' | tail -1)
fi

start_work

upstreams_conf "$work" 18381 18382 >"$work/upstreams.conf"
write_10k_json "$work"
# The compression rows: NGINX's gzip at zlib's level 6 (ours by default), a route compressing.
HTTP_EXTRA=$NGINX_GZIP \
  EXTRA="master_process off;" nginx_proxy_conf "$work" $PORT 18381 18382 >"$work/nginx-gzip.conf"
ROUTE_EXTRA='compress = ["zstd", "gzip"]' \
  switchyard_config $PORT "enabled = false" 18381 18382 >"$work/switchyard-compress.toml"
EXTRA="master_process off;" TLS_PORT=$TLS_PORT nginx_proxy_conf "$work" $PORT 18381 18382 >"$work/nginx.conf"
haproxy_conf $PORT 18381 18382 >"$work/haproxy.cfg"
# NGINX and HAProxy with an access log like ours (a JSON line per request to a file; HAProxy's
# `option httplog` to standard output, which goes to a file), also serving h2c and HTTPS: the
# like-for-like rows, HTTP/2 ones included.
NGINX_ACCESS_LOG="log_format line escape=json '{\"time\":\"\$time_iso8601\",\"client\":\"\$remote_addr\",\"method\":\"\$request_method\",\"path\":\"\$request_uri\",\"protocol\":\"\$server_protocol\",\"status\":\$status,\"bytes\":\$body_bytes_sent,\"duration\":\$request_time,\"upstream\":\"\$upstream_addr\",\"upstream_time\":\"\$upstream_response_time\",\"user_agent\":\"\$http_user_agent\"}'; access_log $work/nginx-access.log line;" \
  EXTRA="master_process off;" TLS_PORT=$TLS_PORT nginx_proxy_conf "$work" $PORT 18381 18382 $H2C_PORT >"$work/nginx-log.conf"
cat certs/localhost.pem certs/localhost-key.pem >"$work/haproxy.pem"
HAPROXY_LOG=1 HAPROXY_TLS_PORT=$TLS_PORT HAPROXY_PEM="$work/haproxy.pem" \
  haproxy_conf $PORT 18381 18382 $H2C_PORT >"$work/haproxy-log.cfg"
TLS_PORT=$TLS_PORT switchyard_config $PORT "path = \"$work/switchyard-access.log\"" 18381 18382 >"$work/switchyard.toml"
switchyard_config $PORT "enabled = false" 18381 18382 >"$work/switchyard-nolog.toml"
# Idle connections parked between requests: a 1 s header timeout, and wrk pausing after each
# response.
sed 's/^request_header = "300s"/request_header = "1s"/' "$work/switchyard.toml" >"$work/switchyard-wake.toml"
echo "function delay() return 800 end" >"$work/pause.lua"
# A route with a prefix strip and three header rules, the access log on as in `switchyard`.
ROUTE_EXTRA='path_prefix = "/api/"
strip_prefix = true
request_headers = { set = { x-env = "bench" }, add = { x-request = "{request_id}" } }
response_headers = { set = { x-proxy = "switchyard" } }' \
  switchyard_config $PORT "path = \"$work/switchyard-policies.log\"" 18381 18382 >"$work/switchyard-policies.toml"

# One rate limit that admits everything wrk can send under valgrind.
ROUTE_EXTRA='[[routes.rate_limit]]
rate = "1000000/s"
burst = 1000000' \
  switchyard_config $PORT "path = \"$work/switchyard-ratelimit.log\"" 18381 18382 >"$work/switchyard-ratelimit.toml"
# A hashing pool keyed by the client's address (the default key; one client, so one key and
# the bound checked: wrk keeps 16 requests in flight), bounded at 125 %.
POOL_EXTRA='algorithm = "hash"
hash = { balance_factor = 125 }' \
  switchyard_config $PORT "path = \"$work/switchyard-hash.log\"" 18381 18382 >"$work/switchyard-hash.toml"
# A pool with admission control whose limit is never reached (what a request pays for the
# queue being there: a check at the pick and one at the request's end).
POOL_EXTRA='admission = { max_in_flight = 1000 }' \
  switchyard_config $PORT "path = \"$work/switchyard-admission.log\"" 18381 18382 >"$work/switchyard-admission.toml"
# A least-latency pool (the clock read at each pick and response, an estimate updated).
POOL_EXTRA='algorithm = "least_latency"' \
  switchyard_config $PORT "path = \"$work/switchyard-latency.log\"" 18381 18382 >"$work/switchyard-latency.toml"
# Sticky sessions: wrk sends one session's cookie (made by the first request), so every
# request is verified and pinned; `switchyard-cookie` is `switchyard` sent the same cookie,
# the baseline for it (a cookie header costs its parsing and forwarding).
POOL_EXTRA="sticky = { secret_file = \"$work/sticky.key\" }" \
  switchyard_config $PORT "path = \"$work/switchyard-sticky.log\"" 18381 18382 >"$work/switchyard-sticky.toml"
printf '0123456789abcdef0123456789abcdef' >"$work/sticky.key"
# An ES256 key pair, its public half the route's key file, and one token signed with it.
openssl ecparam -genkey -name prime256v1 -noout -out "$work/jwt.key" 2>/dev/null
openssl ec -in "$work/jwt.key" -pubout -out "$work/jwt.pub" 2>/dev/null
jwt_token=$(python3 benches/es256_token.py "$work/jwt.key")
ROUTE_EXTRA="jwt = { keys_file = \"$work/jwt.pub\", algorithms = [\"ES256\"], issuer = \"bench\", claims_to_headers = { sub = \"x-user\" } }" \
  switchyard_config $PORT "path = \"$work/switchyard-jwt.log\"" 18381 18382 >"$work/switchyard-jwt.toml"

nginx -p "$work" -c "$work/upstreams.conf" &
pids+=($!)
wait_port 18381

# One session's cookie, from the sticky proxy's first answer (not under valgrind).
sticky_cookie=
if [[ " $PROXIES " == *" switchyard-sticky "* || " $PROXIES " == *" switchyard-cookie "* ]]; then
  "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-sticky.toml" --log-level warn >"$work/sticky-cookie.log" 2>&1 &
  sticky_pid=$!
  pids+=("$sticky_pid")
  for _ in $(seq 100); do
    # Refused until the proxy listens: not an error here.
    sticky_cookie=$(curl -s -D - -o /dev/null "http://127.0.0.1:$PORT/" | tr -d '\r' |
      sed -n 's/^[Ss]et-[Cc]ookie: \([^;]*\).*/\1/p' || true)
    [ -n "$sticky_cookie" ] && break
    sleep 0.1
  done
  kill "$sticky_pid"
  wait "$sticky_pid" 2>/dev/null || true
  [ -n "$sticky_cookie" ] || { echo "the sticky proxy set no cookie" >&2; exit 1; }
fi

declare -A requests instructions
# `$2` under load for `$1` seconds: wrk (HTTP/1.1 keep-alive), or for the HTTP/2 rows h2load
# (16 connections, 10 streams each; h2c by prior knowledge, h2 by ALPN over TLS).
load() {
  if [ "$h2" = 1 ]; then
    h2load -c16 -m10 -t1 -D "$1" "$2" 2>&1
  else
    wrk -t1 -c16 -d"$1s" "${wrk_args[@]}" "$2"
  fi
}

measure() { # name url command...
  local name=$1 url=$2
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.callgrind" "$@" >"$work/$name.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  # Until it answers, not merely until the port opens: a bound socket queues connections while
  # the proxy is still starting (under valgrind, aws-lc's entropy set-up for a TLS listener
  # can take longer than the warm-up), and start-up work must not reach the counts.
  for _ in $(seq 600); do curl -sk "${curl_args[@]}" -o /dev/null --max-time 5 "$url" && break; sleep 0.1; done
  load 3 "$url" >/dev/null
  callgrind_control -z "$pid" >/dev/null
  local out
  out=$(load "$DURATION" "$url")
  callgrind_control -d "$pid" >/dev/null
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  requests[$name]=$(awk '/requests in/ {print $1} /^requests: / {print $8}' <<<"$out")
  instructions[$name]=$(awk '/^summary:/ {print $2}' "$work/$name.callgrind.1")
}

http=http://127.0.0.1:$PORT/
https=https://127.0.0.1:$TLS_PORT/
json=http://127.0.0.1:$PORT/10k.json
api=http://127.0.0.1:$PORT/api/items
h2c=http://127.0.0.1:$H2C_PORT/
for name in $PROXIES; do
  wrk_args=()
  h2=0
  curl_args=()
  case $name in
    *-h2c | h2-floor | h2-direct) h2=1 curl_args=(--http2-prior-knowledge) ;;
    *-h2) h2=1 ;;
  esac
  case $name in
    *-gzip) wrk_args=(-H "Accept-Encoding: gzip") ;;
    *-zstd) wrk_args=(-H "Accept-Encoding: zstd") ;;
    *-jwt) wrk_args=(-H "Authorization: Bearer $jwt_token") ;;
    switchyard-cookie | switchyard-sticky) wrk_args=(-H "Cookie: $sticky_cookie") ;;
    switchyard-paused | switchyard-parked) wrk_args=(-s "$work/pause.lua") ;;
  esac
  case $name in
    nginx) measure nginx $http nginx -p "$work" -c "$work/nginx.conf" ;;
    haproxy) measure haproxy $http haproxy -db -f "$work/haproxy.cfg" ;;
    nginx-log) measure nginx-log $http nginx -p "$work" -c "$work/nginx-log.conf" ;;
    haproxy-log) measure haproxy-log $http haproxy -db -f "$work/haproxy-log.cfg" ;;
    nginx-h2c) measure nginx-h2c $h2c nginx -p "$work" -c "$work/nginx-log.conf" ;;
    haproxy-h2c) measure haproxy-h2c $h2c haproxy -db -f "$work/haproxy-log.cfg" ;;
    switchyard-h2c) measure switchyard-h2c $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard.toml" --log-level warn ;;
    nginx-h2) measure nginx-h2 $https nginx -p "$work" -c "$work/nginx-log.conf" ;;
    haproxy-h2) measure haproxy-h2 $https haproxy -db -f "$work/haproxy-log.cfg" ;;
    switchyard-h2) measure switchyard-h2 $https "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard.toml" --log-level warn ;;
    hyper-floor) measure hyper-floor $http "$floor" 127.0.0.1:$PORT 127.0.0.1:18381 127.0.0.1:18382 ;;
    h2-floor) measure h2-floor $http "$floor" --h2 127.0.0.1:$PORT 127.0.0.1:18381 127.0.0.1:18382 ;;
    h2-direct) measure h2-direct $http "$floor" --h2-direct 127.0.0.1:$PORT 127.0.0.1:18381 127.0.0.1:18382 ;;
    switchyard) measure switchyard $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard.toml" --log-level warn ;;
    switchyard-nolog) measure switchyard-nolog $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-nolog.toml" --log-level warn ;;
    switchyard-path) measure switchyard-path $api "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard.toml" --log-level warn ;;
    switchyard-policies) measure switchyard-policies $api "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-policies.toml" --log-level warn ;;
    switchyard-ratelimit) measure switchyard-ratelimit $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-ratelimit.toml" --log-level warn ;;
    switchyard-hash) measure switchyard-hash $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-hash.toml" --log-level warn ;;
    switchyard-admission) measure switchyard-admission $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-admission.toml" --log-level warn ;;
    switchyard-latency) measure switchyard-latency $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-latency.toml" --log-level warn ;;
    switchyard-paused) measure switchyard-paused $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard.toml" --log-level warn ;;
    switchyard-parked) measure switchyard-parked $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-wake.toml" --log-level warn ;;
    switchyard-cookie) measure switchyard-cookie $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard.toml" --log-level warn ;;
    switchyard-sticky) measure switchyard-sticky $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-sticky.toml" --log-level warn ;;
    switchyard-jwt) measure switchyard-jwt $http "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-jwt.toml" --log-level warn ;;
    nginx-https) measure nginx-https $https nginx -p "$work" -c "$work/nginx.conf" ;;
    nginx-gzip) measure nginx-gzip $json nginx -p "$work" -c "$work/nginx-gzip.conf" ;;
    switchyard-gzip) measure switchyard-gzip $json "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-compress.toml" --log-level warn ;;
    switchyard-zstd) measure switchyard-zstd $json "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard-compress.toml" --log-level warn ;;
    switchyard-https) measure switchyard-https $https "target/$PROFILE/switchyard" run --workers 1 --config "$work/switchyard.toml" --log-level warn ;;
  esac
done

echo
echo "## $(date -u +%Y-%m-%d) — user-space instructions per request (callgrind)"
echo
echo "wrk -t1 -c16, ${DURATION}s, small GET over HTTP/1.1 keep-alive, each proxy under valgrind."
echo
echo "| proxy | requests | instructions/request | × NGINX |"
echo "| --- | ---: | ---: | ---: |"
base=${instructions[nginx]:-}
for name in $PROXIES; do
  per=$(( ${instructions[$name]} / ${requests[$name]} ))
  ratio=-
  [ -n "$base" ] && ratio=$(awk -v a="$per" -v b="$(( base / ${requests[nginx]} ))" 'BEGIN {printf "%.2f", a / b}')
  echo "| $name | ${requests[$name]} | $per | $ratio |"
done
echo
echo "(callgrind dumps: $work/*.callgrind.1)"
