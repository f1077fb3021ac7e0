#!/usr/bin/env bash
# Route policies side by side with NGINX and Caddy (Debian's nginx-light and caddy 2.6): the
# same requests through each, configured the way their users would, and what came back. Not part
# of `cargo test`: a comparison to read (the README's "Compared with NGINX and Caddy" explains
# the differences it shows).
#
# Scenarios, each one request: a stripped prefix and a header set on the way to the backend
# (the backend answers with the path and header it received); a redirect that replaces a
# prefix; a fixed response; gzip of a 50 KB JSON body; a CORS preflight.
#
# Usage: bash tests/peers/routes.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh

require nginx:nginx-light caddy:caddy curl:curl
cargo build --quiet
start_work

BACKEND=18501 SY=18502 NG=18503 CA=18504

# The backend: NGINX answering with what it received, and a 50 KB JSON document (readable by
# NGINX's unprivileged worker).
chmod 755 "$work"
python3 -c 'import json; print(json.dumps([{"id": i, "name": "item %d" % i, "tags": ["a", "b"]} for i in range(1100)]))' >"$work/data.json"
cat >"$work/backend.conf" <<CONF
daemon off; worker_processes 1; pid $work/backend.pid; error_log $work/backend-error.log;
events {}
http {
  access_log off;
  server {
    listen 127.0.0.1:$BACKEND;
    location = /data.json { default_type application/json; alias $work/data.json; }
    location / { default_type text/plain; return 200 "path=\$request_uri env=\$http_x_env\n"; }
  }
}
CONF

cat >"$work/switchyard.toml" <<CONF
[[listeners]]
name = "l"
bind = "127.0.0.1:$SY"
[admin]
enabled = false
[access_log]
enabled = false
[reload]
watch = false

[[routes]]
name = "api"
path_prefix = "/api/"
strip_prefix = true
request_headers = { set = { x-env = "prod" } }
pool = "b"

[[routes]]
name = "old"
path_prefix = "/old/"
redirect = { status = 301, prefix = "/new/" }

[[routes]]
name = "robots"
path = "/robots.txt"
respond = { body = "User-agent: *\nDisallow: /\n" }

[[routes]]
name = "data"
path = "/data.json"
compress = ["gzip"]
cors = { allow_origins = ["https://app.test"], allow_methods = ["GET", "PUT"], max_age = "10m" }
pool = "b"

[[pools]]
name = "b"
[[pools.backends]]
name = "b"
address = "127.0.0.1:$BACKEND"
CONF

cat >"$work/nginx.conf" <<CONF
daemon off; worker_processes 1; pid $work/nginx.pid; error_log $work/nginx-error.log;
events {}
http {
  access_log off;
  upstream b { server 127.0.0.1:$BACKEND; }
  server {
    listen 127.0.0.1:$NG;
    location /api/ { proxy_pass http://b/; proxy_set_header X-Env prod; }
    location /old/ { rewrite ^/old/(.*)\$ /new/\$1 permanent; }
    location = /robots.txt { default_type text/plain; return 200 "User-agent: *\nDisallow: /\n"; }
    location = /data.json {
      if (\$request_method = OPTIONS) {
        add_header Access-Control-Allow-Origin \$http_origin;
        add_header Access-Control-Allow-Methods "GET, PUT";
        add_header Access-Control-Max-Age 600;
        return 204;
      }
      gzip on; gzip_types application/json; gzip_min_length 1024; gzip_comp_level 6;
      proxy_pass http://b;
    }
  }
}
CONF

cat >"$work/Caddyfile" <<CONF
{
  admin off
  auto_https off
}
http://127.0.0.1:$CA {
  handle_path /api/* {
    reverse_proxy 127.0.0.1:$BACKEND {
      header_up X-Env prod
    }
  }
  @old path_regexp old ^/old/(.*)$
  redir @old /new/{re.old.1}?{query} permanent
  respond /robots.txt "User-agent: *
Disallow: /
"
  @preflight method OPTIONS
  handle /data.json {
    header @preflight Access-Control-Allow-Origin {http.request.header.Origin}
    header @preflight Access-Control-Allow-Methods "GET, PUT"
    respond @preflight 204
    encode gzip
    reverse_proxy 127.0.0.1:$BACKEND
  }
}
CONF

nginx -p "$work" -c "$work/backend.conf" &
pids+=($!)
target/debug/switchyard run --config "$work/switchyard.toml" --log-level warn &
pids+=($!)
nginx -p "$work" -c "$work/nginx.conf" &
pids+=($!)
caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
pids+=($!)
for port in $BACKEND $SY $NG $CA; do wait_port "$port"; done

# What one request got: status, the headers that matter, and the body (or its size, gzipped).
show() { # port curl-args...
  local port=$1
  shift
  curl -s -o "$work/body" -D "$work/head" "$@" "http://127.0.0.1:$port${path}"
  local status location vary encoding acao
  status=$(head -1 "$work/head" | cut -d' ' -f2)
  location=$(grep -i '^location:' "$work/head" | cut -d' ' -f2- | tr -d '\r' || true)
  encoding=$(grep -i '^content-encoding:' "$work/head" | cut -d' ' -f2- | tr -d '\r' || true)
  vary=$(grep -i '^vary:' "$work/head" | cut -d' ' -f2- | tr -d '\r' | paste -sd, - || true)
  acao=$(grep -i '^access-control-allow-origin:' "$work/head" | cut -d' ' -f2- | tr -d '\r' || true)
  local body
  if [ -n "$encoding" ]; then body="$(wc -c <"$work/body") bytes $encoding"; else body=$(head -c 60 "$work/body" | tr '\n' ' '); fi
  printf '%s | %s | %s | %s | %s | %s' "$status" "${location:--}" "${encoding:--}" "${vary:--}" "${acao:--}" "$body"
}

echo "| scenario | proxy | status | location | encoding | vary | allow-origin | body |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
scenario() { # name path curl-args...
  local name=$1
  path=$2
  shift 2
  for proxy in switchyard:$SY nginx:$NG caddy:$CA; do
    echo "| $name | ${proxy%%:*} | $(show "${proxy##*:}" "$@") |"
  done
}
scenario "strip prefix + header" "/api/users?x=1"
scenario "redirect prefix" "/old/page?x=1"
scenario "fixed response" "/robots.txt"
scenario "gzip 50 KB JSON" "/data.json" -H "Accept-Encoding: gzip"
scenario "CORS preflight" "/data.json" -X OPTIONS -H "Origin: https://app.test" -H "Access-Control-Request-Method: PUT"
