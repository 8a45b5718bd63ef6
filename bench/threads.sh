#!/usr/bin/env bash
# Many-cores benchmark (issue 16): torsion's echo-server with --threads 1 and --threads 2,
# against tokio's echo on its current-thread and multi-thread runtimes, in one run, in
# alternating rounds (every server once per round), medians over the rounds.
#
#   bash bench/threads.sh
#
# Two measurements, both with the pingpong scenario pp64-c100 (100 connections, 64-byte
# messages, one in flight per connection):
#
# 1. cost: server CPU time per message (utime + stime from /proc/PID/stat around the load
#    run), server pinned to BENCH_SERVER_CPU and the load generator to BENCH_LOADGEN_CPU, as
#    in run.sh. With --threads 2 both reactor threads share the server CPU: this isolates what
#    the threads cost per message (nothing should be shared on the hot path: <= 1.05x).
# 2. throughput: messages per second with nothing pinned, server and load generator sharing
#    every core the machine has, for 1 and 2 threads (torsion) and workers (tokio).
#
# Environment:
#   BENCH_DURATION    measured seconds per run (default 5)
#   BENCH_REPEAT      rounds (default 5)
#   BENCH_THREADS     thread counts to compare (default "1 2"; on a big machine "1 2 4 8 16")
#   BENCH_SCENARIO    scenario (default pp64-c100; see common.sh)
#   BENCH_BUILD       0 skips the cargo builds
#   BENCH_REPORT      a results .tsv of an earlier run: print its report and exit
#   BENCH_SERVER_CPU / BENCH_LOADGEN_CPU   CPUs for the pinned measurement (default 0 and 1;
#                     taskset lists such as 0-31 work)
#   BENCH_LOADGENS    load generator processes per run (default 1; each is single-threaded
#                     and opens the scenario's connections, so K of them open K times as many)
#   CARGO_TARGET_DIR  where the release binaries are (default: <workspace>/target)
#
# On a bigger machine (see bench/SCALING.md), give the load generator its own cores, e.g.
#   BENCH_THREADS="1 2 4 8 16 32" BENCH_SCENARIO=pp64-c1000 bash bench/threads.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-5}
REPEAT=${BENCH_REPEAT:-5}
THREADS=${BENCH_THREADS:-1 2}
SCENARIO=${BENCH_SCENARIO:-pp64-c100}
LOADGENS=${BENCH_LOADGENS:-1}
BUILD=${BENCH_BUILD:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RELEASE=$TARGET_DIR/release
LOADGEN=$RELEASE/loadgen
STARTUP_TENTHS=100

BENCH_SCRIPT=threads.sh
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"

check_seconds "$DURATION" BENCH_DURATION
check_repeat "$REPEAT"
for t in $THREADS; do [[ $t =~ ^[1-9][0-9]*$ ]] || die "BENCH_THREADS: '$t' is not a thread count"; done
[[ $LOADGENS =~ ^[1-9][0-9]*$ ]] || die "BENCH_LOADGENS must be a whole number, got '$LOADGENS'"
scenario_args "$SCENARIO"
[[ $SCENARIO_TRANSPORT == tcp ]] || die "BENCH_SCENARIO must be a TCP scenario (tokio has no Unix echo here)"
LOADGEN_TIMEOUT=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d + 60 }')
raise_fd_limit 4096

if [[ $BUILD != 0 ]]; then
    cargo build --release -q -p torsion-bench --bin loadgen --bin tokio-echo
    cargo build --release -q -p torsion-examples --bin echo-server
fi
for bin in loadgen tokio-echo echo-server; do
    [[ -x $RELEASE/$bin ]] || die "missing $RELEASE/$bin (build it, or unset BENCH_BUILD)"
done

setup_work torsion-threads
RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
TSV=$RESULTS/threads-$STAMP.tsv
printf 'phase\tround\tserver\tthreads\t%s\n' "$ECHO_ROW_HEADER" >"$TSV"

# server_cmd NAME THREADS: sets CMD to the server's command line.
server_cmd() {
    case $1 in
        torsion) CMD=("$RELEASE/echo-server" --threads "$2") ;;
        tokio) CMD=("$RELEASE/tokio-echo" --threads "$2") ;;
    esac
}

# run_multi NAME PROGRAM ARGS...: run_echo with BENCH_LOADGENS load generators at once
# against one server: their messages and bytes are summed into one RESULT line (rate: the sum
# of their rates; latency: the first one's), then the figures are computed as run_echo does.
run_multi() {
    local name=$1 pid before after t0 t1 k msgs=0 bytes=0 rate=0 first="" unit pct rss line
    shift
    if ((LOADGENS == 1)); then
        run_echo "$name" "$SCENARIO" "$@"
        return
    fi
    listen_addr tcp
    start_server "$name" server "$LISTEN_ADDR" "$@" || return 1
    pid=$STARTED_PID
    before=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    local lg_pids=() ok=1 lg
    for ((k = 1; k <= LOADGENS; k++)); do
        timeout "$LOADGEN_TIMEOUT" "${PIN_LOADGEN[@]}" "$LOADGEN" "${SCENARIO_ARGS[@]}" \
            --addr "$STARTED_ADDR" >"$WORK/lg.$k.out" 2>"$WORK/lg.$k.err" &
        lg_pids+=($!)
    done
    for lg in "${lg_pids[@]}"; do wait "$lg" || ok=0; done
    t1=$(date +%s.%N)
    after=$(cpu_ticks "$pid")
    rss=$(status_kib "$pid" VmHWM)
    stop_pid "$pid"
    ((ok)) || { note "$name: a load generator failed"; return 1; }
    for ((k = 1; k <= LOADGENS; k++)); do
        line=$(grep '^RESULT ' "$WORK/lg.$k.out") || { note "$name: no RESULT from load generator $k"; return 1; }
        [[ -n $first ]] || first=$line
        msgs=$((msgs + $(result_field "$line" messages)))
        bytes=$((bytes + $(result_field "$line" bytes)))
        rate=$(awk -v a="$rate" -v b="$(result_field "$line" msgs_per_s)" 'BEGIN { print a + b }')
    done
    LG_RESULT="RESULT mode=pingpong messages=$msgs bytes=$bytes msgs_per_s=$rate"
    echo "  $name/$SCENARIO: $LOADGENS load generators: $rate msg/s"
    read -r unit pct < <(cpu_per_unit $((after - before)) "$LG_RESULT" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
    ECHO_ROW=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' pingpong "$rate" \
        "$(result_field "$first" p50_us)" "$(result_field "$first" p99_us)" "$unit" "$pct" "$rss" na)
}

# measure PHASE ROUND: every server at every thread count once, in a rotated order so no
# server always runs first in a round.
measure() {
    local phase=$1 round=$2 runs=() i n name t
    for t in $THREADS; do
        runs+=("torsion:$t" "tokio:$t")
    done
    n=${#runs[@]}
    for ((i = 0; i < n; i++)); do
        IFS=: read -r name t <<<"${runs[(i + round) % n]}"
        server_cmd "$name" "$t"
        if run_multi "$name-t$t" "${CMD[@]}"; then
            printf '%s\t%s\t%s\t%s\t%s\n' "$phase" "$round" "$name" "$t" "$ECHO_ROW" >>"$TSV"
        fi
    done
}

# report TSV: medians per (phase, server, threads) with their spread; ratios against torsion
# --threads 1 (cost: CPU per message) and against tokio at the same thread count (shared:
# messages per second), both as a ratio of medians and as the median of the ratios paired
# within each round (servers of one round ran minutes apart at most, so pairing cancels
# much of a shared machine's drift).
report() {
    awk -F'\t' "$AWK_LIB"'
NR == 1 { next }
{
    key = $1 SUBSEP $3 SUBSEP $4
    c = ++count[key]
    rate[key, c] = $6
    cpu[key, c] = $9
    value[key, $2] = $1 == "cost" ? $9 : $6
    rounds[$2] = 1
    if (!(key in seen)) { seen[key] = 1; order[++keys] = key }
}
END {
    for (k = 1; k <= keys; k++) {
        key = order[k]
        c = count[key]
        for (i = 1; i <= c; i++) { r[i] = rate[key, i]; u[i] = cpu[key, i] }
        med_rate[key] = median_of(r, c); lo[key] = min_of(r, c); hi[key] = max_of(r, c)
        med_cpu[key] = median_of(u, c)
    }
    printf "%-7s %-8s %7s %10s %18s %10s  %s\n", "phase", "server", "threads", "msgs/s", "(min-max)", "us/msg", "ratio of medians; median of paired ratios"
    for (k = 1; k <= keys; k++) {
        key = order[k]
        split(key, f, SUBSEP)
        if (f[1] == "cost") { base = "cost" SUBSEP f[2] SUBSEP 1; what = "cpu/msg vs --threads 1" }
        else { base = "shared" SUBSEP "tokio" SUBSEP f[3]; what = "msgs/s vs tokio, same threads" }
        n = 0
        for (round in rounds)
            if (ok(value[key, round]) && ok(value[base, round]) && value[base, round] > 0)
                paired[++n] = value[key, round] / value[base, round]
        rt = f[1] == "cost" ? ratio(med_cpu[key], med_cpu[base]) : ratio(med_rate[key], med_rate[base])
        printf "%-7s %-8s %7s %10s %18s %10s  %s; %s (%s)\n", f[1], f[2], f[3], num(med_rate[key], "%.0f"), \
            "(" num(lo[key], "%.0f") "-" num(hi[key], "%.0f") ")", num(med_cpu[key], "%.3f"), rt, \
            num(median_of(paired, n), "%.2fx"), what
    }
}' "$1"
}

if [[ -n ${BENCH_REPORT:-} ]]; then
    report "$BENCH_REPORT"
    exit 0
fi

echo "threads.sh: $SCENARIO, ${DURATION}s per run, $REPEAT rounds, threads: $THREADS, $LOADGENS load generator(s); $(nproc) CPUs"
echo "== 1. cost: server pinned to CPU $SERVER_CPU, load generator to CPU $LOADGEN_CPU"
pin_cpus
for ((r = 1; r <= REPEAT; r++)); do measure cost "$r"; done
echo "== 2. throughput: nothing pinned, server and load generator share every core"
PIN_SERVER=()
PIN_LOADGEN=()
for ((r = 1; r <= REPEAT; r++)); do measure shared "$r"; done

echo
echo "Medians over $REPEAT rounds (raw figures: $TSV). The machine may be shared: see the spread."
report "$TSV"
