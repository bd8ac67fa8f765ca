#!/usr/bin/env bash
# Instructions the walwatch shim adds, counted exactly by callgrind: each workload runs once
# plain (SQLite's `unix` VFS) and once through the shim, counting only `run_workload` (open,
# workload, close), databases on tmpfs, synchronous=NORMAL.
#
#   bench/callgrind.sh [--workload mix|small|all] [--scale F] [--keep DIR] [--no-build]
#
# Prints one line per workload: `WORKLOAD: plain M, shim M, +x.xx%`, then a RESULT line per
# workload for scripts. --keep DIR keeps the callgrind outputs (for callgrind_annotate).
# Targets (issue 12): small <= +2%, mix <= +0.5%.
set -euo pipefail

workloads=(small mix)
scale=1
keep=
build=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --workload) [[ $2 == all ]] || workloads=("$2"); shift 2 ;;
        --scale) scale="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "callgrind.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
command -v valgrind >/dev/null || {
    echo "callgrind.sh: valgrind is not installed; install it (apt-get install valgrind)" >&2
    exit 1
}

cd "$(dirname "$0")/.."
[[ $build == 1 ]] && cargo build --release -p walwatch-bench >&2
bin=target/release/shim-overhead
dir=/dev/shm
[[ -d $dir ]] || dir=${TMPDIR:-/tmp}
out=${keep:-$(mktemp -d "${TMPDIR:-/tmp}/walwatch-callgrind.XXXXXX")}
mkdir -p "$out"
[[ -n $keep ]] || trap 'rm -rf "$out"' EXIT

for w in "${workloads[@]}"; do
    declare -A ir=()
    for v in plain walwatch; do
        # Only run_workload is counted; both variants run the same process setup, including
        # walwatch_rusqlite::register().
        valgrind --tool=callgrind --callgrind-out-file="$out/cg.$w.$v" \
            --collect-atstart=no --toggle-collect='*run_workload*' \
            "$bin" --workload "$w" --variant "$v" --rounds 1 --scale "$scale" --dir "$dir" \
            >/dev/null 2>"$out/vg.$w.$v" || {
            echo "callgrind.sh: $w/$v failed:" >&2
            tail -20 "$out/vg.$w.$v" >&2
            exit 1
        }
        ir[$v]=$(sed -n 's/^summary: *//p; s/^totals: *//p' "$out/cg.$w.$v" | head -1 | cut -d' ' -f1)
    done
    awk -v w="$w" -v s="$scale" -v a="${ir[plain]}" -v b="${ir[walwatch]}" 'BEGIN {
        printf "%s: plain %.1f M, shim %.1f M, %+.2f%%\n", w, a / 1e6, b / 1e6, (b / a - 1) * 100
        printf "RESULT callgrind workload=%s scale=%s plain_ir=%d walwatch_ir=%d ir_ratio=%.4f\n", w, s, a, b, b / a
    }'
    unset ir
done
