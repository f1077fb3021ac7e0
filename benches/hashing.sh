#!/usr/bin/env bash
# Consistent hashing side by side with HAProxy: spread, keys moved when a backend leaves, and a
# hot key under a 125 % load bound (benches/hashing.py says how each is measured). Prints one
# Markdown row per proxy.
#
# Usage: benches/hashing.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

require haproxy:haproxy socat:socat
cargo build --release --quiet
python3 benches/hashing.py target/release/switchyard
