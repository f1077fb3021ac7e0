#!/usr/bin/env bash
# Least latency side by side with round-robin, least-connections, HAProxy leastconn and
# random(2), and NGINX least_conn, over four upstreams of which one is ten times slower
# (benches/least_latency.py says how). Prints one Markdown row per setup.
#
# Usage: benches/least_latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

require haproxy:haproxy nginx:nginx-light
cargo build --release --quiet
python3 benches/least_latency.py target/release/switchyard
