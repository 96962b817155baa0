#!/usr/bin/env bash
# Where the time of one gitfs workload goes: runs it against a fresh gitfs mount of the home that
# tools/bench left in its work directory, and prints the elapsed time, the delta of the mount's
# counters, `perf stat` and `perf record` of the server (top symbols, Swift names demangled) and,
# in a second identical run, `strace -c -f` of the server.
# Usage: tools/bench-profile.sh STATE WORKLOAD [WORK]
#   STATE: cold (empty content cache) | cachewarm (cache full, page cache dropped) | warm
#   WORKLOAD: find | readall | grep | par8 | seqbig | rand4k
#   WORK: tools/bench's --work directory (default /var/tmp/gitfs-bench); uses its corpus "gen" at main, or
#   REPO at REV from the environment (e.g. REPO=hist REV=v12 with --history's work directory).
set -euo pipefail
state=${1:?usage: tools/bench-profile.sh STATE WORKLOAD [WORK]}
workload=${2:?usage: tools/bench-profile.sh STATE WORKLOAD [WORK]}
work=${3:-/var/tmp/gitfs-bench}
root=$(cd "$(dirname "$0")/.." && pwd)
gitfs=${GITFS_BIN:-$root/.build-bn-release/release/gitfs}
home=$work/home
mp=$work/mnt/gitfs-profile
demangle=/opt/swift/usr/bin/swift-demangle
repo=${REPO:-gen}
mirror=$home/repos/$repo.git
[ -d "$mirror" ] || { echo "no $mirror: run tools/bench first" >&2; exit 1; }
commit=$(git -C "$mirror" rev-parse "${REV:-main}^{commit}")
tree=$mp/$repo/commits/$commit
big=$(git -C "$mirror" ls-tree -r -l "$commit" | sort -k4 -n | tail -1 | cut -f2)
mkdir -p "$mp"
pid=""
cleanup() { "$gitfs" unmount "$mp" >/dev/null 2>&1 || fusermount3 -u -z "$mp" 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

case $workload in
  find) cmd="find '$tree' > /dev/null" ;;
  readall) cmd="tar -cf - -C '$tree' . | cat > /dev/null" ;;
  grep) cmd="grep -rc TODO '$tree' > /dev/null || true" ;;
  par8) cmd="find '$tree' -type f -print0 | xargs -0 -P8 -n 32 cat > /dev/null" ;;
  seqbig) cmd="cat '$tree/$big' > /dev/null" ;;
  rand4k) cmd="python3 '$work/rand4k.py' '$tree/$big' 20000 42" ;;
  *) echo "unknown workload $workload" >&2; exit 2 ;;
esac

prepare() {
  cleanup
  case $state in
    cold) rm -rf "$home/cache" ;;
    cachewarm|warm) ;;
    *) echo "unknown state $state" >&2; exit 2 ;;
  esac
  pid=$("$gitfs" mount "$mp" --home "$home" | sed -n 's/.*server pid \([0-9]*\).*/\1/p')
  if [ "$state" = warm ]; then bash -c "$cmd"; else sync; echo 3 > /proc/sys/vm/drop_caches; fi
}
counters() { cat "$mp/.gitfs/stats"; }

if [ "$state" = cachewarm ]; then   # make sure the content cache holds the tree
  prepare; tar -cf - -C "$tree" . | cat > /dev/null
fi

echo "== $state $workload: perf record of server pid"
prepare
before=$(counters)
perf record -q -g -o /tmp/bench-profile.perf -p "$pid" 2>/dev/null & rec=$!
perf stat -e task-clock,context-switches,cpu-migrations,page-faults -p "$pid" -o /tmp/bench-profile.stat 2>/dev/null & pst=$!
sleep 0.3
t0=$(date +%s.%N); bash -c "$cmd"; t1=$(date +%s.%N)
kill -INT $rec $pst; wait $rec 2>/dev/null || true; wait $pst 2>/dev/null || true
after=$(counters)
grep -E 'task-clock|context|migrations|faults' /tmp/bench-profile.stat || true
echo "elapsed $(echo "$t1 - $t0" | bc) s"
python3 - "$before" "$after" <<'EOF'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("counters:", ", ".join(f"{k}+{b[k]-a.get(k,0)}" for k in sorted(b) if isinstance(b[k], int) and k != "pid" and b[k] != a.get(k)))
EOF
perf report -i /tmp/bench-profile.perf --no-children --sort dso,sym --stdio 2>/dev/null \
  | grep -v '^#' | grep '%' | head -40 | { [ -x "$demangle" ] && "$demangle" --simplified || cat; } | cut -c1-200
echo "== by thread"
perf report -i /tmp/bench-profile.perf --no-children --sort comm --stdio 2>/dev/null | grep '%' | head -8

echo "== $state $workload: strace -c -f of the server (second run)"
prepare
strace -c -f -p "$pid" -o /tmp/bench-profile.strace & st=$!
sleep 0.5
t0=$(date +%s.%N); bash -c "$cmd"; t1=$(date +%s.%N)
kill -INT $st; wait $st 2>/dev/null || true
echo "elapsed under strace $(echo "$t1 - $t0" | bc) s"
head -25 /tmp/bench-profile.strace
