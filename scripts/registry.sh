#!/usr/bin/env bash
# Sourced by the demo and benchmarks: start_registry DIR starts Debian's docker-registry on a
# free loopback port with storage in DIR and sets REGISTRY=127.0.0.1:PORT; it stops on exit.

start_registry() {
  local dir=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$dir/data"
  cat > "$dir/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YML
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  REGISTRY_PID=$!
  REGISTRY=127.0.0.1:$port
  trap 'kill $REGISTRY_PID 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "registry did not start: $(cat "$dir/registry.log")" >&2
  return 1
}
