#!/usr/bin/env bash
# Admission side by side with HAProxy's maxconn + maxqueue + timeout queue: one gunicorn
# backend with 4 workers offered three times what it can answer (benches/admission.py says
# how). Prints one Markdown row per setup.
#
# Usage: benches/admission.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

require haproxy:haproxy gunicorn:gunicorn
cargo build --release --quiet
python3 benches/admission.py target/release/switchyard
