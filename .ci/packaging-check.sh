#!/usr/bin/env bash
# The systemd unit must be one systemd accepts as written (its ExecStart pointed at the built
# binary), and the shell completions must load in bash.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/switchyard
[ -x "$bin" ] || cargo build
unit_dir=$(mktemp -d)
trap 'rm -rf "$unit_dir"' EXIT
sed "s#/usr/local/bin/switchyard#$PWD/$bin#g" conf/systemd/switchyard.service >"$unit_dir/switchyard.service"
# systemd only warns about unknown or misspelt settings: any message at all fails the check.
problems=$(systemd-analyze verify "$unit_dir/switchyard.service" 2>&1) || true
if [ -n "$problems" ]; then
  echo "$problems"
  exit 1
fi
echo "systemd-analyze verify conf/systemd/switchyard.service: ok"

bash -c "source <(\"$bin\" completions bash) && complete -p switchyard" >/dev/null
echo "bash completion loads: ok"
