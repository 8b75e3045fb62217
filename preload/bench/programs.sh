#!/usr/bin/env bash
# Times real programs under glibc's malloc, jemalloc, mimalloc and vvmalloc
# (each preloaded): wall time and peak resident memory (GNU time's %e and
# %M), the median of RUNS runs (default 5), the allocators interleaved run
# by run so that a noisy moment hits them all.
#
#   bash preload/bench/programs.sh            # writes docs/preload-programs.csv
#   RUNS=3 OUT=/tmp/p.csv bash preload/bench/programs.sh
#
# Needs: python3, sort, git, cc, /usr/bin/time, and the Debian packages
# libjemalloc2 and libmimalloc2.0 (an allocator whose library is missing is
# skipped, with a note).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
RUNS=${RUNS:-5}
OUT=${OUT:-docs/preload-programs.csv}

cargo build --release -p vvmalloc-preload >/dev/null
vv=$root/target/release/libvvmalloc.so
lib=/usr/lib/x86_64-linux-gnu
allocs=(glibc)
declare -A path=([glibc]="")
for a in "jemalloc:$lib/libjemalloc.so.2" "mimalloc:$lib/libmimalloc.so.2" "vvmalloc:$vv"; do
    name=${a%%:*} file=${a#*:}
    if [ -e "$file" ]; then
        allocs+=("$name")
        path[$name]=$file
    else
        echo "note: $name skipped ($file not found)" >&2
    fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp preload/tests/programs/alloc_threads.py "$work/"
# sort's input: 2 million lines, 40 MB, deterministic.
python3 - "$work/sort.txt" <<'EOF'
import sys
x = 88172645463325252
with open(sys.argv[1], "w") as f:
    for _ in range(2_000_000):
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF; x ^= x >> 7; x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        f.write(f"{x:x} {x % 100000}\n")
EOF
# gcc's input: 400 functions of nested loops and switch statements.
python3 - "$work/big.c" <<'EOF'
import sys
with open(sys.argv[1], "w") as f:
    f.write("#include <string.h>\n")
    for i in range(400):
        f.write(f"int f{i}(int *a, int n) {{ int s = 0;\n")
        f.write("  for (int i = 0; i < n; i++) for (int j = 0; j < i; j++) {\n")
        f.write("    switch ((a[i] ^ j) & 7) {\n")
        for k in range(8):
            f.write(f"      case {k}: s += a[j] * {k + i} - (s >> {k % 5}); break;\n")
        f.write("    } }\n  return s; }\n")
EOF
# A single-threaded Python run: JSON round trips of nested data.
cat > "$work/json1.py" <<'EOF'
import json
data = [{"id": i, "tags": [str(j) * (j % 7) for j in range(i % 40)], "v": i * 0.5} for i in range(60000)]
for _ in range(3):
    data = json.loads(json.dumps(data))
print(len(data), sum(len(d["tags"]) for d in data))
EOF
# git: the files are made here (not timed: thousands of small processes
# would measure process start-up); the timed script runs git alone.
mkdir "$work/tree"
python3 - "$work/tree" <<'EOF'
import sys
for i in range(1, 1501):
    with open(f"{sys.argv[1]}/f{i}.txt", "w") as f:
        f.write("".join(f"line {i} {j}\n" for j in range(1, i % 200 + 51)))
EOF
cat > "$work/git.sh" <<'EOF'
set -e
rm -rf repo && cp -r tree repo && cd repo && git init -q
git add . && git commit -q -m first
for i in $(seq 5 5 1500); do echo "changed $i" >> "f$i.txt"; done
git commit -q -am second
git gc -q --aggressive
git fsck --full --no-progress >/dev/null
EOF
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t \
    GIT_COMMITTER_EMAIL=t@example.com GIT_CONFIG_NOSYSTEM=1 HOME=$work LC_ALL=C
py=$(python3 -c 'import sys; print(sys.executable)')

# PYTHONMALLOC=malloc: every object from malloc, not from Python's own
# small-object arenas (which would hide the allocator under test).
names=("python3 (4 threads)" "python3 (1 thread)" "sort (2 threads)" "git (commit + gc)" "gcc -O2")
cmds=(
    "PYTHONMALLOC=malloc $py alloc_threads.py"
    "PYTHONMALLOC=malloc $py json1.py"
    "sort --parallel=2 -S 200M -k2,2n -k1,1 sort.txt -o sorted.txt"
    "sh git.sh"
    "cc -O2 -c big.c -o big.o"
)

echo "program,allocator,run,wall_s,peak_rss_kib" > "$OUT"
cd "$work"
for p in "${!names[@]}"; do
    for run in $(seq 1 "$RUNS"); do
        for a in "${allocs[@]}"; do
            printf '\r%-22s run %d/%d %-9s' "${names[$p]}" "$run" "$RUNS" "$a" >&2
            if ! LD_PRELOAD=${path[$a]} /usr/bin/time -f "%e %M" -o time.txt \
                sh -c "${cmds[$p]}" >out.txt 2>err.txt; then
                echo >&2
                echo "FAILED: ${names[$p]} under $a:" >&2
                cat err.txt >&2
                exit 1
            fi
            read -r wall rss < <(tail -n 1 time.txt)
            echo "${names[$p]},$a,$run,$wall,$rss" >> "$root/$OUT"
        done
    done
done
echo >&2

# The table: medians, and each allocator's time relative to glibc's.
python3 - "$root/$OUT" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
progs = list(dict.fromkeys(r["program"] for r in rows))
allocs = list(dict.fromkeys(r["allocator"] for r in rows))
med = {}
for p in progs:
    for a in allocs:
        rs = [r for r in rows if r["program"] == p and r["allocator"] == a]
        med[p, a] = (statistics.median(float(r["wall_s"]) for r in rs),
                     statistics.median(int(r["peak_rss_kib"]) for r in rs) / 1024)
print("| program | " + " | ".join(f"{a} s (x glibc), MiB" for a in allocs) + " |")
print("|---|" + "---|" * len(allocs))
for p in progs:
    g = med[p, "glibc"][0]
    cells = [f"{med[p, a][0]:.2f} ({med[p, a][0] / g:.2f}x), {med[p, a][1]:.0f}" for a in allocs]
    print(f"| {p} | " + " | ".join(cells) + " |")
EOF
