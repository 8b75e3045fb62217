#!/usr/bin/env bash
# Scaling past 2 threads: the benchmark report's allocator, structure and
# reclamation parts at 1, 2, 4, 8 and 16 threads. The development machine
# and CI have 2 cores, so this is meant for a bigger machine: build the
# report binary here, copy target/scaling/ there, run it there.
#
#   bash tools/benches/scaling.sh build               # builds target/scaling/report
#   bash tools/benches/scaling.sh run OUT [SECS]      # runs it, writes into OUT
#   bash tools/benches/scaling.sh                     # both, into results-scaling/
#
# `run` needs nothing but the binary (it spawns itself for each measured
# run; every allocator is linked in). SECS is the length of each run
# (default 0.25, one repetition: about 5 minutes on 16 cores). The tables
# name the machine, the command and the date; docs/scaling/ keeps the last
# results committed, with the machine they came from.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=target/scaling/report
threads=${THREADS:-1,2,4,8,16}
allocs=${ALLOCS:-vvmalloc,vv-skiplist-epoch,glibc,jemalloc,mimalloc,snmalloc}

build() {
    cargo build --release --example report
    mkdir -p target/scaling
    cp target/release/examples/report "$bin"
    echo "scaling: built $bin"
}

run() {
    local out=$1 secs=${2:-0.25}
    [ -x "$bin" ] || { echo "scaling: $bin is missing: run 'bash tools/benches/scaling.sh build' first"; exit 2; }
    echo "scaling: $(nproc) CPUs; threads $threads; $secs s per run; into $out"
    # --quick: one repetition and the 1 s garbage study; the thread counts
    # and run length given here override its others.
    "$bin" --quick --parts alloc,structures,reclamation --threads "$threads" --secs "$secs" \
        -a "$allocs" --out "$out"
}

case "${1:-all}" in
    build) build ;;
    run) shift; run "$@" ;;
    all) build; run results-scaling ;;
    *) echo "usage: bash tools/benches/scaling.sh [build | run OUT [SECS]]"; exit 2 ;;
esac
