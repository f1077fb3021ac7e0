#!/usr/bin/env bash
# Scrapes a live proxy (the built-in demo, after some traffic) and validates the exposition with
# Prometheus's own checker, as a Prometheus server would parse it.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/switchyard
[ -x "$bin" ] || cargo build
log=$(mktemp)
"$bin" demo >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT

for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9901/healthz >/dev/null && break
  sleep 0.1
done
for _ in $(seq 20); do curl -s -o /dev/null http://127.0.0.1:8080/; done
curl -s -o /dev/null http://127.0.0.1:8080/api/x
metrics=$(mktemp)
curl -sf http://127.0.0.1:9901/metrics >"$metrics"
echo "scraped $(grep -vc '^#' "$metrics") samples"
promtool check metrics <"$metrics"
echo "promtool check metrics: ok"

# The scrape config, the alerts (with their unit tests) and every dashboard query must be valid
# for Prometheus too.
promtool check config conf/prometheus.yml
promtool test rules conf/prometheus/alerts_test.yml
# Every metric the alerts and the dashboard read is one the proxy exports: in the demo's scrape,
# or, for those of modes the demo does not run (fleet, discovery, webhooks), by name in
# src/metrics/mod.rs.
for name in $(grep -oh 'switchyard_[a-z_]*' conf/prometheus/alerts.yml conf/grafana/switchyard.json | sort -u); do
  grep -q "^${name}" "$metrics" || grep -q "\"${name}\"" src/metrics/mod.rs ||
    { echo "alerts or dashboard read $name, which the proxy does not export"; exit 1; }
done
rules=$(mktemp --suffix=.yml)
python3 - conf/grafana/switchyard.json >"$rules" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard\n    rules:")
for panel in dashboard["panels"]:
    for i, target in enumerate(panel["targets"]):
        expr = target["expr"].replace("$__rate_interval", "1m").replace("$pool", ".*")
        print(f"      - record: dashboard:panel{panel['id']}:{i}\n        expr: {json.dumps(expr)}")
PY
promtool check rules "$rules"
