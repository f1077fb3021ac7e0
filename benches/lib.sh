# Shared by the benchmark scripts (sourced, not run).

# Installs, from Debian, the packages of the commands that are missing; arguments are
# `command:package` pairs.
require() {
  local missing=() tool
  for tool in "$@"; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
  fi
}

# A fresh directory in $work for configs and raw outputs (kept); every process added to $pids is
# stopped when the script exits.
start_work() {
  work=$(mktemp -d)
  pids=()
  trap stop_all EXIT
}

stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

# Waits up to 10 s for something to listen on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never opened" >&2
  return 1
}

# A Switchyard config listening on 127.0.0.1:$1, with the access log table contents $2, balancing
# round-robin over upstreams on 127.0.0.1 at the remaining ports. Client timeouts are long so
# idle benchmark connections stay open. With TLS_PORT set, a second listener there terminates TLS
# with the development certificate (ECDSA P-256) of certs/, and serves HTTP/3 too with H3=1.
switchyard_config() {
  local port=$1 access_log=$2
  shift 2
  cat <<CONF
[[listeners]]
name = "bench"
bind = "127.0.0.1:$port"
CONF
  [ -n "${TLS_PORT:-}" ] && cat <<CONF

[[listeners]]
name = "bench-tls"
bind = "127.0.0.1:$TLS_PORT"
http3 = $([ -n "${H3:-}" ] && echo true || echo false)
[[listeners.tls.certificates]]
cert = "$PWD/certs/localhost.pem"
key = "$PWD/certs/localhost-key.pem"
CONF
  cat <<CONF

[timeouts]
request_header = "300s"
idle = "300s"

[admin]
enabled = false

[access_log]
$access_log

[reload]
watch = false

[[routes]]
name = "all"
pool = "pool"
${ROUTE_EXTRA:-}

[[pools]]
name = "pool"
${POOL_EXTRA:-}
CONF
  local i=0
  for upstream in "$@"; do
    printf '\n[[pools.backends]]\nname = "b%d"\naddress = "127.0.0.1:%s"\n' "$i" "$upstream"
    i=$((i + 1))
  done
}

# The 10 KB JSON document the compression rows fetch, written to $1/10k.json.
write_10k_json() {
  python3 -c 'import json; print(json.dumps([{"id": i, "name": "item %d" % i, "tags": ["a", "b"]} for i in range(230)]))' >"$1/10k.json"
  chmod 755 "$1"
}

# What NGINX's gzip rows add to its http block: zlib level 6, as Switchyard's default.
NGINX_GZIP="gzip on; gzip_types application/json; gzip_comp_level 6; gzip_min_length 1024;"

# NGINX serving `return 200 "ok\n"` on 127.0.0.1 at each port given after the work dir $1:
# the fixed upstreams every proxy is measured in front of.
upstreams_conf() {
  local work=$1
  shift
  echo "worker_processes 1; daemon off; pid $work/upstreams.pid; error_log $work/upstreams-error.log;"
  echo "events { worker_connections 8192; }"
  echo "http {"
  echo "  access_log off; keepalive_requests 10000000; keepalive_timeout 300s;"
  # /10k.json: 10 KB of JSON, for the compression rows (written by the caller, in $work).
  for port in "$@"; do
    echo "  server { listen 127.0.0.1:$port; location / { return 200 \"ok\\n\"; }"
    echo "    location = /10k.json { default_type application/json; alias $work/10k.json; } }"
  done
  echo "}"
}

# NGINX as the proxy: 1 worker, upstream keep-alive, round-robin over upstreams $3 and $4,
# HTTP/1.1 on port $2 and h2c on port $5 when given, and HTTPS (HTTP/1.1 and h2 by ALPN, the
# certs/ development certificate, session cache and tickets) on $TLS_PORT when set. Extra
# main-context directives in $EXTRA.
nginx_proxy_conf() {
  local work=$1 port=$2 up1=$3 up2=$4 h2=${5:-}
  cat <<CONF
worker_processes 1;
daemon off;
${EXTRA:-}
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 8192; }
http {
  ${NGINX_ACCESS_LOG:-access_log off;}
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  ${HTTP_EXTRA:-}
  upstream pool {
    server 127.0.0.1:$up1;
    server 127.0.0.1:$up2;
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:$port;
    location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
CONF
  [ -n "$h2" ] && cat <<CONF
  server {
    listen 127.0.0.1:$h2 http2;
    location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
CONF
  [ -n "${TLS_PORT:-}" ] && cat <<CONF
  server {
    listen 127.0.0.1:$TLS_PORT ssl http2;
    ssl_certificate $PWD/certs/localhost.pem;
    ssl_certificate_key $PWD/certs/localhost-key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
CONF
  echo "}"
}

# HAProxy as the proxy: 1 thread, `http-reuse always`, round-robin over upstreams $2 and $3,
# HTTP/1.1 on port $1 and h2c on port $4 when given; HTTPS (h2 and HTTP/1.1 by ALPN) on
# $HAPROXY_TLS_PORT with the PEM (certificate and key) $HAPROXY_PEM when set; with
# $HAPROXY_LOG, `option httplog` lines written to standard output.
haproxy_conf() {
  local port=$1 up1=$2 up2=$3 h2=${4:-}
  cat <<CONF
global
  nbthread 1
  maxconn 5000
${HAPROXY_LOG:+  log stdout format raw local0}
defaults
  mode http
${HAPROXY_LOG:+  log global}
${HAPROXY_LOG:+  option httplog}
  option http-keep-alive
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:$port
CONF
  [ -n "$h2" ] && echo "  bind 127.0.0.1:$h2 proto h2"
  [ -n "${HAPROXY_TLS_PORT:-}" ] && echo "  bind 127.0.0.1:$HAPROXY_TLS_PORT ssl crt $HAPROXY_PEM alpn h2,http/1.1"
  cat <<CONF
  default_backend pool
backend pool
  balance roundrobin
  http-reuse always
  server a 127.0.0.1:$up1
  server b 127.0.0.1:$up2
CONF
}
