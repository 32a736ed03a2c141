#!/usr/bin/env bash
# Pull benchmark: the same Debian-based images from the same local registry, each into a fresh
# store, by lazyrun, by podman, and by skopeo copy + umoci unpack. Prints median and min-max
# per tool and the ratio against lazyrun. Run as root. RUNS=N (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh podman skopeo umoci bc python3
source scripts/registry.sh
RUNS=${RUNS:-5}

cargo build --release --quiet --workspace --bins
bin=$PWD/target/release
work=$(mktemp -d /var/tmp/lazyrun-bench.XXXXXX)
start_registry "$work/registry"
trap 'kill $REGISTRY_PID 2>/dev/null || true; rm -rf "$work"' EXIT
$bin/lazyrun-testkit push-debian "$REGISTRY" >/dev/null
images=("$REGISTRY/demo/debian:12" "$REGISTRY/demo/debian-app:12")

now() { date +%s.%N; }
declare -A times

run_lazyrun() {
  local root=$work/lazyrun; rm -rf "$root"; sync
  local t0; t0=$(now)
  $bin/lazyrun --root "$root" pull -q "${images[@]}" >/dev/null
  echo "$(now) - $t0" | bc
}
run_podman() {
  local root=$work/podman; rm -rf "$root" "$work/podman-run"; sync
  local t0; t0=$(now)
  for i in "${images[@]}"; do
    podman --root "$root" --runroot "$work/podman-run" --storage-driver overlay \
      pull -q --tls-verify=false "$i" >/dev/null
  done
  local t; t=$(echo "$(now) - $t0" | bc)
  podman --root "$root" --runroot "$work/podman-run" --storage-driver overlay rmi -a -f >/dev/null 2>&1 || true
  echo "$t"
}
run_skopeo_umoci() {
  local dir=$work/oci; rm -rf "$dir" "$work/bundles"; mkdir -p "$work/bundles"; sync
  local t0; t0=$(now)
  local n=0
  for i in "${images[@]}"; do
    n=$((n + 1))
    skopeo copy -q --src-tls-verify=false "docker://$i" "oci:$dir:img$n" >/dev/null
    umoci unpack --image "$dir:img$n" "$work/bundles/b$n" >/dev/null
  done
  echo "$(now) - $t0" | bc
}

for r in $(seq "$RUNS"); do
  for tool in lazyrun podman skopeo_umoci; do
    t=$(run_$tool)
    times[$tool]+="$t "
  done
  echo "run $r/$RUNS done" >&2
done

python3 - "${times[lazyrun]}" "${times[podman]}" "${times[skopeo_umoci]}" <<'PY'
import statistics, sys
names = ["lazyrun pull", "podman pull", "skopeo copy + umoci unpack"]
data = [[float(x) for x in a.split()] for a in sys.argv[1:]]
base = statistics.median(data[0])
print(f"Pull of 2 Debian-based images (3 layers) from a loopback registry, {len(data[0])} runs each")
print(f"| tool | median s | min-max s | vs lazyrun |")
print(f"|---|---|---|---|")
for n, d in zip(names, data):
    m = statistics.median(d)
    print(f"| {n} | {m:.2f} | {min(d):.2f}-{max(d):.2f} | {m / base:.2f}x |")
PY
