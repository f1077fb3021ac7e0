#!/usr/bin/env bash
# HTTP/3 side by side with Caddy 2.6 (Debian's; an HTTP/3 server on quic-go): the scenarios of
# tests/it/http3.rs, run by the same real clients against both, each proxy in front of the same
# upstream (a small Python server) with the same certificate (certs/localhost.pem).
#
# - gtlsclient (ngtcp2) downloads 1 MiB: does its hash match the upstream's file?
# - gtlsclient posts 300 KB: does the upstream's hash of what it got match?
# - niquests: the first answer's Alt-Svc, and the protocol of the third request.
# - Chromium forced onto QUIC for the origin: nextHopProtocol of the page.
# - 0-RTT: a resumed session's POST sent in early data (the status it gets; Switchyard runs
#   with early_data = true).
#
# Usage: bash benches/http3-peers.sh   (not part of `cargo test`; loopback only, stops by itself)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

require caddy:caddy gtlsclient:ngtcp2-client chromium:chromium curl:curl
cargo build --release --quiet
python=python3
[ -x target/test-venv/bin/python3 ] && python=target/test-venv/bin/python3
"$python" -c 'import niquests' 2>/dev/null || {
  echo "niquests is missing: bash tests/run.sh sets it up in target/test-venv" >&2
  exit 1
}

start_work
UP=18480 SY=18481 CA=18482 PLAIN=18483
mkdir -p "$work/www"
head -c 1048576 /dev/urandom >"$work/www/big.bin"
head -c 300000 /dev/urandom >"$work/upload.bin"
cat >"$work/www/index.html" <<'HTML'
<!doctype html><title>h3</title><body><script>
document.body.textContent = "protocol=" + performance.getEntries()[0].nextHopProtocol;
</script></body>
HTML
cat >"$work/upstream.py" <<'PY'
import hashlib, http.server, os, sys
root = sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, body, kind):
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        name = "index.html" if self.path == "/" else os.path.basename(self.path)
        kind = "text/html" if name.endswith(".html") else "application/octet-stream"
        path = os.path.join(root, name)
        if not os.path.exists(path):
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        with open(path, "rb") as f:
            self.reply(f.read(), kind)
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        self.reply(hashlib.sha256(body).hexdigest().encode(), "text/plain")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
python3 "$work/upstream.py" $UP "$work/www" &
pids+=($!)
wait_port $UP

# benches/lib.sh's config (a plain listener on $PLAIN too), with 0-RTT on.
H3=1 TLS_PORT=$SY switchyard_config $PLAIN "enabled = false" $UP |
  sed 's/^http3 = true$/http3 = true\nearly_data = true/' >"$work/switchyard.toml"
cat >"$work/Caddyfile" <<CONF
{
	admin off
	auto_https off
	servers :$CA {
		protocols h1 h2 h3
	}
}
https://localhost:$CA {
	tls $PWD/certs/localhost.pem $PWD/certs/localhost-key.pem
	reverse_proxy 127.0.0.1:$UP
}
CONF
target/release/switchyard run --config "$work/switchyard.toml" --log-level warn >"$work/switchyard.log" 2>&1 &
pids+=($!)
caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
pids+=($!)
wait_port $SY
wait_port $CA

spki=$(openssl x509 -in certs/localhost.pem -pubkey -noout | openssl pkey -pubin -outform der |
  openssl dgst -sha256 -binary | base64)
want_big=$(sha256sum <"$work/www/big.bin" | cut -d' ' -f1)
want_post=$(sha256sum <"$work/upload.bin" | cut -d' ' -f1)

h3get() { # port dir path options... : gtlsclient's output; bodies saved in dir
  local port=$1 dir=$2 path=$3
  shift 3
  mkdir -p "$dir"
  timeout 20 gtlsclient --no-quic-dump --no-http-dump --exit-on-all-streams-close --timeout=10s \
    --download="$dir" "$@" 127.0.0.1 "$port" "https://localhost:$port$path" 2>&1 || true
}
status() { grep -o '\[:status: [0-9]*\]' | tr -dc '0-9' | head -c 3; }

declare -A result
for peer in switchyard:$SY caddy:$CA; do
  name=${peer%%:*} port=${peer#*:}
  dir="$work/$name"
  h3get "$port" "$dir/get" /big.bin >"$dir-get.txt"
  got=$(cat "$dir/get/big.bin" 2>/dev/null | sha256sum | cut -d' ' -f1)
  result[$name,get]=$([ "$got" = "$want_big" ] && echo "intact ($(status <"$dir-get.txt"))" || echo "BROKEN")
  h3get "$port" "$dir/post" /sha256 --http-method=POST --data="$work/upload.bin" >"$dir-post.txt"
  got=$(cat "$dir/post/sha256" 2>/dev/null || true)
  result[$name,post]=$([ "$got" = "$want_post" ] && echo "intact ($(status <"$dir-post.txt"))" || echo "BROKEN")
  result[$name,altsvc]=$("$python" - "https://localhost:$port/" "$PWD/certs/ca.pem" <<'PY'
import sys, niquests
url, ca = sys.argv[1], sys.argv[2]
with niquests.Session() as s:
    seen = [s.get(url, verify=ca, timeout=10) for _ in range(3)]
print(f"{seen[0].headers.get('alt-svc')} · {seen[0].conn_info.http_version.name} then {seen[2].conn_info.http_version.name}")
PY
)
  result[$name,chromium]=$(timeout 30 chromium --headless=new --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/chromium-$name" --origin-to-force-quic-on="localhost:$port" \
    --ignore-certificate-errors-spki-list="$spki" --host-resolver-rules="MAP localhost 127.0.0.1" \
    --virtual-time-budget=5000 --dump-dom "https://localhost:$port/" 2>/dev/null |
    grep -o 'protocol=[a-z0-9/.]*' | head -1)
  resume=(--session-file="$dir/session" --tp-file="$dir/params")
  h3get "$port" "$dir/first" / "${resume[@]}" >/dev/null
  out=$(h3get "$port" "$dir/early" /sha256 "${resume[@]}" --http-method=POST --data="$work/upload.bin")
  early=$(grep -q "Early data was rejected" <<<"$out" && echo "early data refused" || echo "in early data")
  result[$name,zero_rtt]="$(status <<<"$out") ($early)"
done

echo
echo "## $(date -u +%Y-%m-%d) — HTTP/3 against Caddy $(caddy version | cut -d' ' -f1)"
echo
echo "| | Switchyard | Caddy |"
echo "| --- | --- | --- |"
echo "| gtlsclient GET 1 MiB | ${result[switchyard,get]} | ${result[caddy,get]} |"
echo "| gtlsclient POST 300 KB | ${result[switchyard,post]} | ${result[caddy,post]} |"
echo "| niquests: Alt-Svc · first, third request | ${result[switchyard,altsvc]} | ${result[caddy,altsvc]} |"
echo "| Chromium nextHopProtocol | ${result[switchyard,chromium]} | ${result[caddy,chromium]} |"
echo "| 0-RTT POST | ${result[switchyard,zero_rtt]} | ${result[caddy,zero_rtt]} |"
echo
echo "(raw outputs: $work)"
