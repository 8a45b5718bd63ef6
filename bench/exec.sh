#!/usr/bin/env bash
# exec-server benchmark: torsion's `exec-server -- cat` against `socat
# TCP-LISTEN:PORT,fork EXEC:cat`, in one run (issue: child processes as transports).
#
#   bash bench/exec.sh
#
# Both servers run one `cat` per connection and copy socket -> cat's stdin and cat's stdout
# -> socket. The load generator streams 64 KiB writes over 10 connections (`loadgen stream`,
# every byte echoed back and verified), pinned to CPU 1; the server is pinned to CPU 0 and
# its children inherit that. Rounds alternate socat, exec-server, socat, ... and the table
# gives medians.
#
# Figures per run:
#   MB/s          echoed megabytes per second in the measured phase;
#   server us/MB  CPU time (utime + stime) of the server process alone per MB: the cost of
#                 the copying, which is what the framework does (socat's figure is the
#                 listening parent, which copies nothing: its forked child does, so for socat
#                 only the tree figure is meaningful);
#   tree us/MB    CPU of the server and every child it reaped (utime + stime + cutime +
#                 cstime, read after the children were reaped): server + cat (+ socat's
#                 per-connection child). The fair comparison.
#
# Environment: BENCH_DURATION (seconds per run, default 5), BENCH_REPEAT (rounds, default 3),
# BENCH_BUILD=0 to skip cargo, BENCH_SERVER_CPU / BENCH_LOADGEN_CPU, CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BENCH_SCRIPT=exec.sh
DURATION=${BENCH_DURATION:-5}
REPEAT=${BENCH_REPEAT:-3}
BUILD=${BENCH_BUILD:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
LOADGEN=$TARGET_DIR/release/loadgen
EXEC=$TARGET_DIR/release/exec-server
STARTUP_TENTHS=100
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
check_seconds "$DURATION" BENCH_DURATION
check_repeat "$REPEAT"
LOADGEN_TIMEOUT=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d + 60 }')
command -v socat >/dev/null || die "socat is not installed (apt-get install socat)"
if [[ $BUILD != 0 ]]; then
    cargo build --release -q -p torsion-examples --bin exec-server -p torsion-bench --bin loadgen
fi
setup_work torsion-exec
pin_cpus
SCENARIO_ARGS=(stream --conns 10 --size 65536 --duration "$DURATION")

# Prints utime + stime and utime + stime + cutime + cstime of process $1, in ticks.
tree_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    # shellcheck disable=SC2086
    set -- $stat
    echo "$((${12} + ${13})) $((${12} + ${13} + ${14} + ${15}))"
}

# Waits (at most 10 s) until process $1 has no children left (all reaped).
wait_childless() {
    local _
    for _ in $(seq 100); do
        [[ -z $(cat /proc/"$1"/task/*/children 2>/dev/null | tr -d ' \n') ]] && return 0
        sleep 0.1
    done
    note "process $1 still has children after 10 s"
}

# A free loopback port for socat (which cannot report a kernel-chosen one).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_socat() {
    local port
    port=$(free_port)
    "${PIN_SERVER[@]}" socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" EXEC:cat 2>"$WORK/socat.err" &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    STARTED_ADDR=127.0.0.1:$port
    for _ in $(seq "$STARTUP_TENTHS"); do
        # A connect probe; it costs one fork of cat, before the measurement.
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    die "socat did not listen on $port in time: $(tail -n 3 "$WORK/socat.err")"
}

start_exec() {
    : >"$WORK/exec.out"
    "${PIN_SERVER[@]}" "$EXEC" --listen 127.0.0.1:0 -- cat >"$WORK/exec.out" 2>"$WORK/exec.err" &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    local line
    for _ in $(seq "$STARTUP_TENTHS"); do
        if IFS= read -r line <"$WORK/exec.out" && [[ $line == "listening on "* ]]; then
            STARTED_ADDR=${line#listening on }
            return 0
        fi
        sleep 0.1
    done
    die "exec-server did not announce itself: $(tail -n 3 "$WORK/exec.err")"
}

TSV=$ROOT/bench/results/exec-$(date +%Y%m%d-%H%M%S).tsv
mkdir -p "$ROOT/bench/results"
printf 'round\tserver\tmb_per_s\tserver_us_per_mb\ttree_us_per_mb\n' >"$TSV"
for round in $(seq "$REPEAT"); do
    for server in socat exec-server; do
        if [[ $server == socat ]]; then start_socat; else start_exec; fi
        pid=$STARTED_PID
        wait_childless "$pid"
        read -r own0 tree0 < <(tree_ticks "$pid")
        run_loadgen "$server" "$STARTED_ADDR" || die "$server: load run failed"
        wait_childless "$pid"
        read -r own1 tree1 < <(tree_ticks "$pid")
        stop_pid "$pid"
        mb=$(result_field "$LG_RESULT" bytes)
        rate=$(result_field "$LG_RESULT" mb_per_s)
        row=$(awk -v r="$round" -v s="$server" -v rate="$rate" -v mb="$mb" -v o=$((own1 - own0)) \
            -v t=$((tree1 - tree0)) -v hz="$CLK_TCK" 'BEGIN {
                mb /= 1e6
                printf "%s\t%s\t%s\t%.1f\t%.1f\n", r, s, rate, o / hz * 1e6 / mb, t / hz * 1e6 / mb }')
        echo "$row" >>"$TSV"
        note "round $round $server: $(cut -f3- <<<"$row" | tr '\t' ' ') (MB/s, server us/MB, tree us/MB)"
    done
done

awk -F'\t' "$AWK_LIB"'
NR > 1 { k = $2; n[k]++; rate[k, n[k]] = $3; own[k, n[k]] = $4; tree[k, n[k]] = $5 }
END {
    for (k in n) {
        for (i = 1; i <= n[k]; i++) { a[i] = rate[k, i]; b[i] = own[k, i]; c[i] = tree[k, i] }
        R[k] = median_of(a, n[k]); O[k] = median_of(b, n[k]); T[k] = median_of(c, n[k])
    }
    printf "%-12s %10s %14s %12s\n", "server", "MB/s", "server us/MB", "tree us/MB"
    for (k in n) printf "%-12s %10s %14s %12s\n", k, num(R[k], "%.1f"), num(O[k], "%.1f"), num(T[k], "%.1f")
    printf "exec-server / socat: MB/s %s, tree CPU per MB %s\n",
        ratio(R["exec-server"], R["socat"]), ratio(T["exec-server"], T["socat"])
}' "$TSV"
echo "runs: $TSV"
