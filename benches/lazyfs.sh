#!/usr/bin/env bash
# lazyfs benchmark, against the same tree on the local disk (umoci unpack) and fuse-overlayfs
# over that tree, all in one run on one machine. Run as root. RUNS=N (default 7).
#   read: sequential read of a 512 MiB file already in the page cache (dd bs=1M), and the
#         same after dropping every cache (so it comes from the disk, through the server
#         unless passthrough)
#   walk: find + stat of every entry of the Debian image (about 7,000 entries); "cold" means
#         a fresh mount for FUSE and dropped dentries/inodes for the local disk, "warm" means
#         walked just before
#   rss:  the lazyfs server's peak RSS after walking and reading all of a 10,000-file image
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh skopeo umoci fuse-overlayfs python3
source scripts/registry.sh
RUNS=${RUNS:-7}

cargo build --release --quiet --workspace --bins
bin=$PWD/target/release
work=$(mktemp -d /var/tmp/lazyfs-bench.XXXXXX)
chmod 755 "$work"
start_registry "$work/registry"
user=lazyrun-test
id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
chmod 666 /dev/fuse
grep -qx user_allow_other /etc/fuse.conf || echo user_allow_other >> /etc/fuse.conf
mounts=()
cleanup() {
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null || true; done
  kill "$REGISTRY_PID" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

$bin/lazyrun-testkit push-debian "$REGISTRY" >/dev/null
$bin/lazyrun-testkit push-bench "$REGISTRY" >/dev/null
deb=$REGISTRY/demo/debian:12 big=$REGISTRY/demo/bigfile:1 many=$REGISTRY/demo/many:1
store=$work/store
$bin/lazyrun --root "$store" pull -q "$deb" "$big" "$many" >/dev/null
mkdir -p "$work/ustore" && chown "$user" "$work/ustore"
runuser -u "$user" -- $bin/lazyrun --root "$work/ustore" pull -q "$big" >/dev/null

unpack() { # image name -> local rootfs
  skopeo copy -q --src-tls-verify=false "docker://$1" "oci:$work/oci:$2" >/dev/null
  umoci unpack --image "$work/oci:$2" "$work/local-$2" >/dev/null
  echo "$work/local-$2/rootfs"
}
local_deb=$(unpack "$deb" deb)
local_big=$(unpack "$big" big)

lazyfs_mount() { # image mountpoint [args...]
  mkdir -p "$2"; $bin/lazyfs --root "$store" mount "$@"; mounts+=("$2")
}
lazyfs_umount() { $bin/lazyfs --root "$store" umount "$1"; }
ovl_mount() { # lower mountpoint
  mkdir -p "$2" "$2.u" "$2.w"; rm -rf "$2.u"/* "$2.w"/*
  fuse-overlayfs -o "lowerdir=$1,upperdir=$2.u,workdir=$2.w" "$2"; mounts+=("$2")
}
user_mount() { # image mountpoint
  mkdir -p "$2"; chown "$user" "$2"
  runuser -u "$user" -- $bin/lazyfs --root "$work/ustore" mount "$1" "$2" --read-only --allow-other
  mounts+=("$2")
}

now() { date +%s.%N; }
declare -A t
timeit() { # key command...
  local t0 t1; t0=$(now); "${@:2}" >/dev/null; t1=$(now)
  t[$1]+="$(echo "$t1 - $t0" | bc) "
}
readall() { dd if="$1" of=/dev/null bs=1M status=none; }
walk() { find "$1" -printf '%p %s %m %U %G %T@\n' >/dev/null; }
drop_dcache() { sync; echo 2 > /proc/sys/vm/drop_caches; }

m=$work/m
lazyfs_mount "$big" "$m/big-root" --read-only
lazyfs_mount "$big" "$m/big-nopt" --read-only --no-passthrough
user_mount "$big" "$m/big-user"
ovl_mount "$local_big" "$m/big-ovl"
for f in "$local_big/big" "$m/big-root/big" "$m/big-nopt/big" "$m/big-user/big" "$m/big-ovl/big"; do
  readall "$f"; readall "$f"
done
for r in $(seq "$RUNS"); do
  timeit read-local readall "$local_big/big"
  timeit read-lazyfs readall "$m/big-root/big"
  timeit read-lazyfs-nopt readall "$m/big-nopt/big"
  timeit read-lazyfs-user readall "$m/big-user/big"
  timeit read-ovl readall "$m/big-ovl/big"
done
for r in $(seq "$RUNS"); do
  for k in local lazyfs lazyfs-nopt lazyfs-user; do
    case $k in
      local) f=$local_big/big ;; lazyfs) f=$m/big-root/big ;;
      lazyfs-nopt) f=$m/big-nopt/big ;; lazyfs-user) f=$m/big-user/big ;;
    esac
    sync; echo 3 > /proc/sys/vm/drop_caches
    timeit "cold-$k" readall "$f"
  done
done
# Dropping dentries (below) evicts idle FUSE inodes and their cached pages: reads go first.
for r in $(seq "$RUNS"); do
  drop_dcache; timeit walk-cold-local walk "$local_deb"
  lazyfs_mount "$deb" "$m/deb" --read-only; timeit walk-cold-lazyfs walk "$m/deb"
  timeit walk-warm-lazyfs walk "$m/deb"; lazyfs_umount "$m/deb"
  ovl_mount "$local_deb" "$m/deb-ovl"; timeit walk-cold-ovl walk "$m/deb-ovl"
  timeit walk-warm-ovl walk "$m/deb-ovl"; umount "$m/deb-ovl"
  timeit walk-warm-local walk "$local_deb"
  echo "run $r/$RUNS done" >&2
done

# Memory: the server of a 10,000-file image after every entry was listed, stat-ed and read.
lazyfs_mount "$many" "$m/many" --read-only
walk "$m/many"; find "$m/many" -type f -exec cat {} + >/dev/null
pid=$(awk -v m="$m/many" '$5 == m { for (i = 1; i <= NF; i++) if ($i == "-") { print $(i + 2); exit } }' /proc/self/mountinfo | sed 's/^lazyfs://')
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
files=$(find "$m/many" -type f | wc -l)
lazyfs_umount "$m/many"
entries=$(find "$local_deb" | wc -l)

python3 - "$RUNS" "$entries" "$files" "$hwm" \
  "${t[read-local]}" "${t[read-lazyfs]}" "${t[read-lazyfs-nopt]}" "${t[read-lazyfs-user]}" "${t[read-ovl]}" \
  "${t[walk-cold-local]}" "${t[walk-cold-lazyfs]}" "${t[walk-cold-ovl]}" \
  "${t[walk-warm-local]}" "${t[walk-warm-lazyfs]}" "${t[walk-warm-ovl]}" \
  "${t[cold-local]}" "${t[cold-lazyfs]}" "${t[cold-lazyfs-nopt]}" "${t[cold-lazyfs-user]}" <<'PY'
import statistics as st, sys
runs, entries, files, hwm = sys.argv[1:5]
d = [[float(x) for x in a.split()] for a in sys.argv[5:]]
mib = 512
def row(name, xs, base, speed):
    m = st.median(xs)
    if speed:
        rate = lambda s: mib / s / 1024
        print(f"| {name} | {rate(m):.2f} GiB/s | {rate(max(xs)):.2f}-{rate(min(xs)):.2f} | {st.median(base) / m * 100:.0f}% |")
    else:
        print(f"| {name} | {m * 1000:.0f} ms | {min(xs) * 1000:.0f}-{max(xs) * 1000:.0f} | {m / st.median(base):.2f}x |")
print(f"Sequential read of a cached 512 MiB file, {runs} runs each")
print("| path | median | min-max | vs local disk |\n|---|---|---|---|")
names = ["local disk (umoci unpack)", "lazyfs, root (passthrough)", "lazyfs, root, --no-passthrough",
         "lazyfs, unprivileged user", "fuse-overlayfs over the local tree"]
for n, xs in zip(names, d[0:5]):
    row(n, xs, d[0], True)
print(f"\nSequential read of the same file after dropping all caches (from disk), {runs} runs each")
print("| path | median | min-max | vs local disk |\n|---|---|---|---|")
for n, xs in zip(["local disk", "lazyfs, root (passthrough)", "lazyfs, root, --no-passthrough",
                  "lazyfs, unprivileged user"], d[11:15]):
    row(n, xs, d[11], True)
print(f"\nfind + stat of the Debian image ({entries} entries), {runs} runs each")
print("| tree | median | min-max | vs local disk |\n|---|---|---|---|")
for n, xs, base in [("local disk, cold dentries", d[5], d[5]), ("lazyfs, fresh mount", d[6], d[5]),
                    ("fuse-overlayfs, fresh mount", d[7], d[5]), ("local disk, warm", d[8], d[8]),
                    ("lazyfs, warm", d[9], d[8]), ("fuse-overlayfs, warm", d[10], d[8])]:
    row(n, xs, base, False)
print(f"\nlazyfs server peak RSS after walking and reading all {files} files: {int(hwm) / 1024:.1f} MiB")
PY
