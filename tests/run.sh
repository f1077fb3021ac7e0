#!/usr/bin/env bash
# The test command: installs the Debian packages whose real programs the tests talk to, when
# missing, then runs every test binary, going on past a failing one so none is skipped.
# Extra arguments go to `cargo test` (for example `bash tests/run.sh failover::`, one feature).
set -euo pipefail
cd "$(dirname "$0")/.."

# command:package — nginx: the access log compared with NGINX's; redis-server: discovery and
# fleet tests; chromium: the status page, CORS and redirects; ss: listen backlogs; curl:
# redirects followed; haproxy: PROXY protocol headers from a real balancer; htpasswd: basic
# auth users files made as an operator makes them; openssl: RSA keys for JWT tests; varnishd:
# real caches behind a hashing pool; pebble (and pebble-challtestsrv): a real ACME CA; gtlsclient
# (ngtcp2-client): an HTTP/3 client. Python's brotli and zstandard (Debian's interpreter, which
# the tests call) decode compressed responses.
missing=()
for need in nginx:nginx-light redis-server:redis-server chromium:chromium ss:iproute2 curl:curl \
  haproxy:haproxy htpasswd:apache2-utils openssl:openssl varnishd:varnish pebble:pebble \
  gtlsclient:ngtcp2-client; do
  command -v "${need%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${need%%:*}" ] || missing+=("${need#*:}")
done
python=python3
[ -x /usr/bin/python3 ] && python=/usr/bin/python3
for module in brotli:python3-brotli zstandard:python3-zstandard venv:python3-venv; do
  "$python" -c "import ${module%%:*}" 2>/dev/null || missing+=("${module#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing the Debian packages the tests need: ${missing[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y "${missing[@]}"
fi

# niquests (HTTP/3 by Alt-Svc, as a Python client follows it) is not packaged by Debian: from
# PyPI into a virtualenv under target/, which the HTTP/3 tests use.
venv=target/test-venv
if ! "$venv/bin/python3" -c 'import niquests' 2>/dev/null; then
  "$python" -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install --quiet 'niquests>=3.11,<4'
fi

exec cargo test --no-fail-fast "$@"
