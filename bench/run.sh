#!/usr/bin/env bash
# The walwatch shim's overhead: wall time and instructions, plain `unix` VFS vs `walwatch`.
#
#   bench/run.sh [--rounds N] [--scale F] [--ir-scale F] [--quick]
#
# 1. builds target/release/shim-overhead (cargo build --release -p walwatch-bench);
# 2. wall time: interleaved plain/walwatch rounds in one process (medians, ratio), for
#    synchronous=NORMAL with the databases on disk ($TMPDIR), NORMAL on tmpfs (/dev/shm: fsync
#    is free there, so nothing hides the shim's CPU cost) and FULL on disk (--quick: NORMAL on
#    disk only);
# 3. instructions: each variant alone (`--variant plain|walwatch --rounds 1`) under
#    `perf stat -e instructions:u` when the CPU counters work, else under
#    `valgrind --tool=callgrind`, counting only the workload function (open → close); prints
#    the ratio. Valgrind runs ~50x slower, hence the smaller --ir-scale.
# Ends with a summary table (markdown). The limit we test against: at most 2% overhead.
set -euo pipefail

rounds=15
scale=1
ir_scale=0.25
quick=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --scale) scale="$2"; shift 2 ;;
        --ir-scale) ir_scale="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
cargo build --release -p walwatch-bench
bin=target/release/shim-overhead
out=$(mktemp -d "${TMPDIR:-/tmp}/walwatch-bench-run.XXXXXX")
trap 'rm -rf "$out"' EXIT

# RESULT lines carry key=value pairs; `field LINE KEY` prints one value.
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

echo "== conditions: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"

configs=("normal disk ${TMPDIR:-/tmp}")
if [[ $quick == 0 ]]; then
    [[ -d /dev/shm ]] && configs+=("normal tmpfs /dev/shm")
    configs+=("full disk ${TMPDIR:-/tmp}")
fi
rows=()
for config in "${configs[@]}"; do
    read -r sync where dir <<<"$config"
    echo
    echo "== wall time: synchronous=$sync, databases on $where ($dir)"
    "$bin" --rounds "$rounds" --scale "$scale" --sync "$sync" --dir "$dir" | tee "$out/wall.txt"
    line=$(grep '^RESULT wall' "$out/wall.txt")
    rows+=("| wall ms, synchronous=$sync, $where (median of $rounds) | $(field "$line" plain_ms) | $(field "$line" walwatch_ms) | $(field "$line" wall_ratio) (per-round median $(field "$line" wall_paired), IQR $(field "$line" wall_paired_p25)–$(field "$line" wall_paired_p75)) |")
    if [[ -n "$(field "$line" cpu_ratio)" ]]; then
        rows+=("| on-CPU ratio, synchronous=$sync, $where | | | $(field "$line" cpu_ratio) (per-round median $(field "$line" cpu_paired)) |")
    fi
done

echo
tool=callgrind
if perf stat -x, -e instructions:u -- true 2>&1 >/dev/null | grep -qE '^[0-9]+,'; then
    tool=perf
fi
echo "== instructions ($tool), synchronous=NORMAL, scale $ir_scale, databases on ${TMPDIR:-/tmp}"
declare -A ir
for v in plain walwatch; do
    if [[ $tool == perf ]]; then
        # Whole process, user space; startup is the same for both variants.
        perf stat -x, -e instructions:u -o "$out/perf.$v" -- \
            "$bin" --variant "$v" --rounds 1 --scale "$ir_scale" >/dev/null
        ir[$v]=$(grep -E '^[0-9]+,' "$out/perf.$v" | head -1 | cut -d, -f1)
    else
        # Only run_workload (open, workload, close) is counted; both variants run the same
        # process setup, including walwatch_rusqlite::register().
        valgrind --tool=callgrind --callgrind-out-file="$out/cg.$v" \
            --collect-atstart=no --toggle-collect='*run_workload*' \
            "$bin" --variant "$v" --rounds 1 --scale "$ir_scale" >/dev/null 2>"$out/vg.$v"
        ir[$v]=$(sed -n 's/^summary: *//p; s/^totals: *//p' "$out/cg.$v" | head -1 | cut -d' ' -f1)
    fi
    echo "$v: ${ir[$v]} instructions"
done
ir_ratio=$(awk -v a="${ir[plain]}" -v b="${ir[walwatch]}" 'BEGIN { printf "%.4f", b / a }')
echo "walwatch/plain: $ir_ratio"
rows+=("| instructions ($tool, scale $ir_scale) | ${ir[plain]} | ${ir[walwatch]} | $ir_ratio |")

echo
echo "== summary (limit: walwatch/plain <= 1.02)"
echo "| measurement | plain | walwatch | walwatch/plain |"
echo "|---|---:|---:|---|"
printf '%s\n' "${rows[@]}"
