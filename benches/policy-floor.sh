#!/usr/bin/env bash
# The floor of `switchyard-policies` (benches/policy_floor.rs): instructions http itself spends
# per request on what that route adds (a target parsed, four header fields inserted and
# written), counted by callgrind as the difference between a run with that work and one
# without, over the same number of requests.
#
# Usage: benches/policy-floor.sh   (N=200000)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh

N=${N:-200000}
PROFILE=${PROFILE:-dist}
require valgrind:valgrind
floor=$(cargo build --profile "$PROFILE" --bench policy_floor --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*policy_floor[^"]*\)".*/\1/p' | tail -1)
start_work
count() { # with|without
  valgrind --tool=callgrind --callgrind-out-file="$work/$1.callgrind" "$floor" "$N" "$1" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
with=$(count with)
without=$(count without)
echo "http's floor for switchyard-policies' work: $(((with - without) / N)) instructions per request ($N requests; callgrind dumps in $work)"
