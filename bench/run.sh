#!/usr/bin/env bash
# The walwatch shim's overhead: wall time and instructions, plain `unix` VFS vs `walwatch`.
#
#   bench/run.sh [--rounds N] [--scale F] [--ir-scale F] [--quick]
#
# 1. builds target/release/shim-overhead (cargo build --release -p walwatch-bench);
# 2. wall time: interleaved plain/walwatch rounds in one process (medians, paired ratios), for
#    both workloads (small: 20,000 one-statement transactions of each kind; mix: speedtest1-like)
#    with synchronous=NORMAL on tmpfs (/dev/shm: fsync is free there, so nothing hides the
#    shim's CPU cost), and the mix on disk, NORMAL and FULL (--quick: tmpfs only);
# 3. instructions: bench/callgrind.sh, each workload and variant alone under callgrind,
#    counting only the workload function (open → close).
# Ends with summary tables (markdown): instructions and wall-time ratios side by side.
# Targets (issue 12): small transactions <= +2% instructions, the mix <= +0.5%.
set -euo pipefail

rounds=15
scale=1
ir_scale=1
quick=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --scale) scale="$2"; shift 2 ;;
        --ir-scale) ir_scale="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
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

rows=()
# Wall time: both workloads on tmpfs (fsync is free there, so nothing hides the shim's CPU
# cost); the mix also on disk, NORMAL and FULL (not with --quick).
configs=()
[[ -d /dev/shm ]] && configs+=("small normal tmpfs /dev/shm" "mix normal tmpfs /dev/shm")
if [[ $quick == 0 || ${#configs[@]} == 0 ]]; then
    configs+=("mix normal disk ${TMPDIR:-/tmp}")
    [[ $quick == 0 ]] && configs+=("mix full disk ${TMPDIR:-/tmp}")
fi
declare -A wall=()
side=()
for config in "${configs[@]}"; do
    read -r workload sync where dir <<<"$config"
    echo
    echo "== wall time: $workload workload, synchronous=$sync, databases on $where ($dir)"
    "$bin" --workload "$workload" --rounds "$rounds" --scale "$scale" --sync "$sync" --dir "$dir" | tee "$out/wall.txt"
    line=$(grep '^RESULT wall' "$out/wall.txt")
    if [[ $where == tmpfs ]]; then
        wall[$workload]="$(field "$line" wall_paired) (IQR $(field "$line" wall_paired_p25)–$(field "$line" wall_paired_p75))"
    fi
    rows+=("| $workload: wall ms, synchronous=$sync, $where (median of $rounds) | $(field "$line" plain_ms) | $(field "$line" walwatch_ms) | $(field "$line" wall_ratio) (per-round median $(field "$line" wall_paired), IQR $(field "$line" wall_paired_p25)–$(field "$line" wall_paired_p75)) |")
    if [[ -n "$(field "$line" cpu_ratio)" ]]; then
        rows+=("| $workload: on-CPU ratio, synchronous=$sync, $where | | | $(field "$line" cpu_ratio) (per-round median $(field "$line" cpu_paired)) |")
    fi
done

echo
if command -v valgrind >/dev/null; then
    echo "== instructions (callgrind, run_workload only), synchronous=NORMAL, tmpfs, scale $ir_scale"
    bench/callgrind.sh --no-build --workload all --scale "$ir_scale" | tee "$out/ir.txt"
    for w in small mix; do
        line=$(grep "^RESULT callgrind workload=$w " "$out/ir.txt")
        rows+=("| $w: instructions (callgrind, scale $ir_scale) | $(field "$line" plain_ir) | $(field "$line" walwatch_ir) | $(field "$line" ir_ratio) |")
        side+=("| $w | $(field "$line" ir_ratio) | ${wall[$w]:-} |")
    done
else
    echo "== instructions: valgrind is not installed (apt-get install valgrind); skipped"
fi

echo
echo "== summary (targets: instructions walwatch/plain <= 1.02 small, <= 1.005 mix)"
echo "| measurement | plain | walwatch | walwatch/plain |"
echo "|---|---:|---:|---|"
printf '%s\n' "${rows[@]}"
if [[ ${#side[@]} -gt 0 ]]; then
    echo
    echo "| workload | instructions walwatch/plain | wall time walwatch/plain, tmpfs (paired median) |"
    echo "|---|---:|---|"
    printf '%s\n' "${side[@]}"
fi
