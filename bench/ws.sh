#!/usr/bin/env bash
# WebSocket echo benchmark: torsion's ws-echo against tokio-tungstenite's echo server on a
# current_thread runtime (bench/src/bin/tokio-ws-echo.rs), in two scenarios:
#   small:  64 B text messages over 100 connections, one in flight per connection;
#   large:  64 KiB binary messages over 4 connections, one in flight per connection.
# ws-loadgen (bench/src/bin/ws-loadgen.rs) drives the load and checks every echo; the server is
# pinned to one CPU and the load generator to the other. Rounds alternate (tungstenite,
# torsion, tungstenite, torsion, ...) so a neighbour's load hits both alike; the report gives
# medians of messages per second and of server CPU per message (utime+stime from
# /proc/PID/stat over the measured window), and the ratios torsion/tungstenite.
#
#   bench/ws.sh                       # 3 rounds of 5 s per scenario
#   BENCH_REPEAT=5 DURATION=10 bench/ws.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_SCRIPT=bench/ws.sh
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
DURATION=${DURATION:-5}
REPEAT=${BENCH_REPEAT:-3}
# shellcheck source=bench/common.sh
source bench/common.sh
check_seconds "$DURATION" DURATION
check_repeat "$REPEAT"
setup_work torsion-ws-bench
pin_cpus
raise_fd_limit 4096

TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p torsion-examples --bin ws-echo
cargo build --release -q -p torsion-bench --bin tokio-ws-echo --bin ws-loadgen

# start NAME CMD...: starts a server pinned to SERVER_CPU, sets PID and ADDR.
start() {
    local name=$1
    shift
    local out=$WORK/$name.out
    # A fresh file: the previous round's server announced another port in it.
    rm -f "$out"
    "${PIN_SERVER[@]}" "$@" >"$out" 2>"$WORK/$name.err" &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 100); do
        if [[ -s $out ]]; then
            ADDR=$(head -1 "$out" | sed -n 's/^listening on //p')
            [[ -n $ADDR ]] && return 0
        fi
        sleep 0.1
    done
    die "$name did not announce its address"
}

# measure NAME SCENARIO CMD...: one load run against a fresh server; prints
# "NAME SCENARIO MSGS_PER_SEC CPU_US_PER_MESSAGE".
measure() {
    local name=$1 scenario=$2
    shift 2
    start "$name" "$@"
    local args=()
    case $scenario in
        small) args=(--conns 100 --size 64) ;;
        large) args=(--conns 4 --size 65536 --binary) ;;
    esac
    local report
    report=$("${PIN_LOADGEN[@]}" timeout $((${DURATION%.*} + 30)) "$TARGET/release/ws-loadgen" \
        --target "$ADDR" --server-pid "$PID" --duration "$DURATION" --warmup 1 "${args[@]}")
    stop_pid "$PID"
    awk -v n="$name" -v s="$scenario" '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        printf "%s %s %s %s\n", n, s, v["msgs_per_sec"], v["server_cpu_us_per_msg"]
    }' <<<"$report"
}

RESULTS=$WORK/results
: >"$RESULTS"
for scenario in small large; do
    for round in $(seq "$REPEAT"); do
        note "$scenario round $round/$REPEAT"
        measure tungstenite "$scenario" "$TARGET/release/tokio-ws-echo" --listen 127.0.0.1:0 >>"$RESULTS"
        measure torsion "$scenario" "$TARGET/release/ws-echo" --listen 127.0.0.1:0 >>"$RESULTS"
    done
done

echo "# WebSocket echo, server pinned to CPU $SERVER_CPU, ${DURATION}s measured per run, $REPEAT alternating rounds (medians)"
echo "# small: 64 B text x 100 connections; large: 64 KiB binary x 4 connections; one message in flight per connection"
echo "# machine: $(nproc) CPUs, shared with other work; load average $(cut -d' ' -f1-3 /proc/loadavg)"
awk "$AWK_LIB"'
{ rate[$1 " " $2] = rate[$1 " " $2] " " $3; cpu[$1 " " $2] = cpu[$1 " " $2] " " $4; seen[$2] = 1 }
END {
    printf "%-8s %-20s %12s %14s\n", "scenario", "server", "msgs/s", "CPU us/msg"
    split("small large", order, " ")
    for (k = 1; k <= 2; k++) {
        s = order[k]
        if (!(s in seen)) continue
        split("tungstenite torsion", names, " ")
        for (i = 1; i <= 2; i++) {
            key = names[i] " " s
            if (!(key in rate)) continue
            r[names[i]] = median_words(rate[key]); c[names[i]] = median_words(cpu[key])
            printf "%-8s %-20s %12.0f %14.3f\n", s, names[i], r[names[i]], c[names[i]]
        }
        if (r["tungstenite"] > 0 && c["tungstenite"] > 0)
            printf "%-8s %-20s %11.2fx %13.2fx\n", s, "torsion/tungstenite", r["torsion"] / r["tungstenite"], c["torsion"] / c["tungstenite"]
        delete r; delete c
    }
}' "$RESULTS"
echo "# raw rounds (server scenario msgs/s CPU-us/msg):"
cat "$RESULTS"
