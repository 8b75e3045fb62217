#!/usr/bin/env bash
# Start-up cost of each preloaded allocator: the CPU time (perf's
# task-clock) and page faults of a short-lived process, `ls /`, under
# glibc's malloc (nothing preloaded), an empty preloaded library (the cost
# of preloading anything), libgcc_s alone, jemalloc, mimalloc and vvmalloc. ROUNDS rounds
# (default 5) of RUNS runs each (default 100), the allocators interleaved
# round by round so that a noisy moment hits them all; the table gives the
# median of the rounds' means and their spread (min-max).
#
#   bash preload/bench/startup.sh
#   ROUNDS=3 RUNS=50 bash preload/bench/startup.sh
#
# Needs: perf, cc, and the Debian packages libjemalloc2 and libmimalloc2.0
# (an allocator whose library is missing is skipped, with a note).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-100}

cargo build --release -p vvmalloc-preload >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo 'void vv_empty(void) {}' > "$work/empty.c"
cc -O2 -shared -fPIC -o "$work/empty.so" "$work/empty.c"

lib=/usr/lib/x86_64-linux-gnu
allocs=(glibc empty)
declare -A path=([glibc]="" [empty]="$work/empty.so")
# libgcc_s alone: what any Rust `cdylib` loads (std's unwinder), whose
# constructor runs `cpuid` (slow in a VM) to fill its CPU feature table.
for a in "libgcc_s:/lib/x86_64-linux-gnu/libgcc_s.so.1" \
    "jemalloc:$lib/libjemalloc.so.2" "mimalloc:$lib/libmimalloc.so.2" \
    "vvmalloc:$root/target/release/libvvmalloc.so"; do
    name=${a%%:*} file=${a#*:}
    if [ -e "$file" ]; then
        allocs+=("$name")
        path[$name]=$file
    else
        echo "note: $name skipped ($file not found)" >&2
    fi
done

# One round of one allocator: "<ms of task-clock per run> <page faults per run>".
measure() {
    local p=$1
    perf stat -r "$RUNS" -x, -e task-clock,page-faults -o "$work/stat" \
        env ${p:+LD_PRELOAD=$p} ls / >/dev/null
    awk -F, '$3 ~ /task-clock/ {ms=$1} $3 ~ /page-faults/ {pf=$1} END {print ms, pf}' "$work/stat"
}

declare -A ms pf
for ((r = 0; r < ROUNDS; r++)); do
    for a in "${allocs[@]}"; do
        read -r m f < <(measure "${path[$a]}")
        ms[$a]+="$m "
        pf[$a]+="$f "
    done
done

echo "Start-up: \`env LD_PRELOAD=<lib> ls /\`, $ROUNDS rounds of $RUNS runs, $(date -u +%Y-%m-%d), $(nproc) CPUs"
echo
echo "| allocator | CPU ms per run (median of rounds) | spread | page faults per run |"
echo "|---|---:|---:|---:|"
for a in "${allocs[@]}"; do
    python3 - "$a" "${ms[$a]}" "${pf[$a]}" <<'EOF'
import statistics, sys
name, ms, pf = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
print(f"| {name} | {statistics.median(ms):.3f} | {min(ms):.3f}-{max(ms):.3f} | {statistics.median(pf):.0f} |")
EOF
done
