# Shared by the benchmark scripts (sourced, not run).

# Waits up to 10 s for something to listen on 127.0.0.1:$1.
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never opened" >&2
  return 1
}

# A Switchyard config listening on 127.0.0.1:$1, with the access log table contents $2, balancing
# round-robin over upstreams on 127.0.0.1 at the remaining ports. Client timeouts are long so
# idle benchmark connections stay open.
switchyard_config() {
  local port=$1 access_log=$2
  shift 2
  cat <<CONF
[[listeners]]
name = "bench"
bind = "127.0.0.1:$port"

[timeouts]
request_header = "300s"
idle = "300s"

[admin]
enabled = false

[access_log]
$access_log

[reload]
watch = false

[[routes]]
name = "all"
pool = "pool"

[[pools]]
name = "pool"
CONF
  local i=0
  for upstream in "$@"; do
    printf '\n[[pools.backends]]\nname = "b%d"\naddress = "127.0.0.1:%s"\n' "$i" "$upstream"
    i=$((i + 1))
  done
}
