#!/usr/bin/env bash
# The checkpoint controller against a runaway writer (auto-checkpoint off, 100-row
# transactions of 1 KB rows, as fast as it can), with and without the sidecar, interleaved:
# peak WAL against the hard limit, and the writer's commit latency p50/p99/max.
#
#   bench/controller.sh [--rounds N] [--seconds S] [--hard-limit SIZE] [--dir DIR]
#
# Needs `cargo build --release` (walwatch and libwalwatch.so) and Debian's /usr/bin/python3.
# Without the controller the WAL grows until the run ends; it is capped at 1 GiB to spare
# the disk (that run then ends early).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 seconds=10 hard=32MiB soft=16MiB dir=${TMPDIR:-/tmp}
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --hard-limit) hard="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "controller.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ -x target/release/walwatch && -f target/release/libwalwatch.so ]] || { echo "run cargo build --release first" >&2; exit 1; }

work=$(mktemp -d "$dir/walwatch-controller-bench.XXXXXX")
sidecar_pid=""
cleanup() { [[ -n "$sidecar_pid" ]] && kill "$sidecar_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export WALWATCH_EXT=$PWD/target/release/libwalwatch WALWATCH_DIR=$work/stats
worker=(/usr/bin/python3 tests/worker.py)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

run() { # variant round
    local db="$work/$1-$2.db"
    "${worker[@]}" init "$db" >/dev/null
    if [[ $1 == controller ]]; then
        target/release/walwatch serve --listen "127.0.0.1:$port" --interval 1s --db "$db" \
            --hard-limit "$hard" --soft-limit "$soft" 2>"$work/sidecar.log" &
        sidecar_pid=$!
        sleep 0.5
        "${worker[@]}" runaway "$db" --seconds "$seconds" --rows 100 > "$work/$1-$2.json"
        # How often the controller truncated, and how long it held WRITE (stalling the writer).
        curl -sf "http://127.0.0.1:$port/metrics" | grep -E \
            '^walwatch_controller_(write_lock_held_seconds_total|actions_total\{.*action="truncate",result="ok"\})' \
            > "$work/$1-$2.metrics" || true
        kill "$sidecar_pid"; wait "$sidecar_pid" 2>/dev/null || true; sidecar_pid=""
    else
        "${worker[@]}" runaway "$db" --seconds "$seconds" --rows 100 --until-wal-bytes 1073741824 > "$work/$1-$2.json"
    fi
    rm -f "$db" "$db-wal" "$db-shm"
}

for r in $(seq 1 "$rounds"); do
    if (( r % 2 )); then run controller "$r"; run alone "$r"; else run alone "$r"; run controller "$r"; fi
done

/usr/bin/python3 - "$work" "$rounds" "$hard" <<'PY'
import json, statistics, sys
work, rounds, hard = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print(f"runaway writer, {rounds} rounds each, hard limit {hard} (soft = half)\n")
print("| variant | peak WAL (MiB, median / max) | commits/s | commit p50 ms | commit p99 ms | commit max ms | TRUNCATEs | WRITE held per TRUNCATE ms |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")

def controller_figures(variant, r):
    """(TRUNCATEs that completed, seconds WRITE was held) from the sidecar's /metrics."""
    truncates = held = 0.0
    try:
        for line in open(f"{work}/{variant}-{r}.metrics"):
            value = float(line.split()[-1])
            if "write_lock_held" in line:
                held = value
            else:
                truncates = value
    except FileNotFoundError:
        pass
    return truncates, held

for variant in ["alone", "controller"]:
    runs = [json.load(open(f"{work}/{variant}-{r}.json")) for r in range(1, rounds + 1)]
    med = lambda k: statistics.median(x[k] for x in runs)
    peak = [x["peak_wal_bytes"] / 2**20 for x in runs]
    print(f"| {variant} | {statistics.median(peak):.1f} / {max(peak):.1f} | {statistics.median(x['commits_per_s'] for x in runs):.0f} "
          f"| {med('p50_ms'):.2f} | {med('p99_ms'):.2f} | {max(x['max_ms'] for x in runs):.1f} ", end="")
    figures = [controller_figures(variant, r) for r in range(1, rounds + 1)]
    truncates = sum(t for t, _ in figures)
    held = sum(h for _, h in figures)
    print(f"| {truncates:.0f} | {1e3 * held / truncates:.1f} |" if truncates else "| – | – |")
PY
