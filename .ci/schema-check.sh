#!/usr/bin/env bash
# Every shipped config validates against the JSON Schema `switchyard config --schema` prints
# (what an editor's TOML language server checks as the file is typed), and a misspelt key does
# not.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug/switchyard
[ -x "$bin" ] || cargo build
schema=$(mktemp --suffix=.json)
trap 'rm -f "$schema"' EXIT
"$bin" config --schema >"$schema"
python3 - "$schema" conf/*.toml <<'PY'
import json, sys, tomllib
from jsonschema import Draft202012Validator

schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)
for path in sys.argv[2:]:
    config = tomllib.load(open(path, "rb"))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.path))
    for error in errors:
        print(f"{path}: {'.'.join(map(str, error.path))}: {error.message}")
    if errors:
        sys.exit(1)
    print(f"{path}: valid against the schema")
misspelt = {"listeners": [{"name": "a", "bind": "127.0.0.1:1", "bnid": "x"}]}
if validator.is_valid(misspelt):
    sys.exit("the schema accepts a misspelt key")
print("a misspelt key is refused")
PY
