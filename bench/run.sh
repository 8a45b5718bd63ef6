#!/usr/bin/env bash
# Echo-server benchmark: runs every server through every scenario and prints a table.
#
#   bash bench/run.sh
#
# Each (server, scenario) pair gets a fresh server process pinned to CPU 0 and a load
# generator pinned to CPU 1. The server's CPU time is sampled from /proc/PID/stat
# around the load run and its peak RSS (VmHWM) is read at the end; then the server is
# stopped. See bench/README.md for what each figure means.
#
# Environment:
#   BENCH_DURATION   seconds of measurement per scenario (default 5; decimals allowed)
#   BENCH_SERVERS    servers to run, from: raw-mio torsion tokio asyncio (default: all)
#   BENCH_SCENARIOS  scenarios, from: pp64-c100 pp64-c1000 stream64k-c10 (default: all)
#   BENCH_BUILD      set to 0 to skip the cargo builds
#   BENCH_SERVER_CPU / BENCH_LOADGEN_CPU   CPUs to pin to (default 0 and 1)
#   CARGO_TARGET_DIR where the release binaries are (default: <workspace>/target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-5}
SERVERS=${BENCH_SERVERS:-raw-mio torsion tokio asyncio}
SCENARIOS=${BENCH_SCENARIOS:-pp64-c100 pp64-c1000 stream64k-c10}
BUILD=${BENCH_BUILD:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RELEASE=$TARGET_DIR/release
LOADGEN=$RELEASE/loadgen
# Longest a server may take to print its `listening on` line, in tenths of a second.
STARTUP_TENTHS=100

BENCH_SCRIPT=run.sh
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"

for name in $SERVERS; do
    [[ " raw-mio torsion tokio asyncio " == *" $name "* ]] ||
        die "unknown server '$name' in BENCH_SERVERS (known: raw-mio torsion tokio asyncio)"
done
for name in $SCENARIOS; do
    [[ " pp64-c100 pp64-c1000 stream64k-c10 " == *" $name "* ]] ||
        die "unknown scenario '$name' in BENCH_SCENARIOS (known: pp64-c100 pp64-c1000 stream64k-c10)"
done
[[ $DURATION =~ ^[0-9]+([.][0-9]+)?$ ]] || die "BENCH_DURATION must be a number of seconds, got '$DURATION'"
awk -v d="$DURATION" 'BEGIN { exit !(d > 0 && d <= 600) }' || die "BENCH_DURATION must be in (0, 600]"
# Hard wall-clock bound for one load generator run: measurement plus generous setup time.
LOADGEN_TIMEOUT=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d + 60 }')

# --- Environment -----------------------------------------------------------------

# 1000 connections need more than the usual 1024 descriptors, in both the server and
# the load generator (both inherit this shell's limit).
raise_fd_limit 4096
# Pin the server and the load generator to different cores, if we can.
pin_cpus

CLK_TCK=$(getconf CLK_TCK)
# The real interpreter, not a wrapper (such as a pyenv shim) that would run extra
# processes at startup.
PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || PYTHON=

# --- Build -----------------------------------------------------------------------

if [[ $BUILD != 0 ]]; then
    note "building torsion-bench (release)"
    cargo build --release -p torsion-bench || die "cargo build -p torsion-bench failed"
    note "building torsion echo-server (release)"
    if ! cargo build --release -p torsion-examples --bin echo-server; then
        note "could not build the torsion echo-server; it will be skipped if no binary exists"
    fi
fi
[[ -x $LOADGEN ]] || die "$LOADGEN not found (build with: cargo build --release -p torsion-bench)"

# --- Servers and scenarios -------------------------------------------------------

# Sets SERVER_CMD to the command line of server $1; fails if it is unavailable.
server_cmd() {
    local bin
    case $1 in
        raw-mio) bin=$RELEASE/raw-mio-echo ;;
        torsion) bin=$RELEASE/echo-server ;;
        tokio) bin=$RELEASE/tokio-echo ;;
        asyncio)
            [[ -n $PYTHON ]] || { note "skipping asyncio: python3 not found"; return 1; }
            SERVER_CMD=("$PYTHON" "$ROOT/bench/asyncio_echo.py")
            return 0
            ;;
        *) die "unknown server '$1' (known: raw-mio torsion tokio asyncio)" ;;
    esac
    [[ -x $bin ]] || { note "skipping $1: $bin does not exist"; return 1; }
    SERVER_CMD=("$bin")
}

# Sets SCENARIO_ARGS to the load generator arguments of scenario $1.
scenario_args() {
    case $1 in
        pp64-c100) SCENARIO_ARGS=(pingpong --conns 100 --size 64 --duration "$DURATION") ;;
        pp64-c1000) SCENARIO_ARGS=(pingpong --conns 1000 --size 64 --duration "$DURATION") ;;
        stream64k-c10) SCENARIO_ARGS=(stream --conns 10 --size 65536 --duration "$DURATION") ;;
        *) die "unknown scenario '$1' (known: pp64-c100 pp64-c1000 stream64k-c10)" ;;
    esac
}

# --- Server process control ------------------------------------------------------

SERVER_PID=
SERVER_ADDR=
WORK=$(mktemp -d "${TMPDIR:-/tmp}/torsion-bench.XXXXXX")

# Stops the server this script started (by PID only): SIGTERM, then SIGKILL after 2 s.
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 20); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

cleanup() {
    stop_server
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts server $1 (command in SERVER_CMD) pinned to SERVER_CPU, on 127.0.0.1 port 0,
# and waits for its `listening on <addr>` line. Sets SERVER_PID and SERVER_ADDR.
start_server() {
    local name=$1 out=$WORK/$1.out err=$WORK/$1.err line
    : >"$out"
    # taskset execs the server, so $! is the server's own PID.
    "${PIN_SERVER[@]}" "${SERVER_CMD[@]}" --listen 127.0.0.1:0 >"$out" 2>"$err" &
    SERVER_PID=$!
    for _ in $(seq "$STARTUP_TENTHS"); do
        # `read` succeeds only once a complete first line is there.
        if IFS= read -r line <"$out"; then
            if [[ $line == "listening on "* ]]; then
                SERVER_ADDR=${line#listening on }
                return 0
            fi
            note "$name: unexpected first line '$line' (want 'listening on <addr>')"
            stop_server
            return 1
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            note "$name exited during startup: $(tail -n 3 "$err")"
            stop_server
            return 1
        fi
        sleep 0.1
    done
    note "$name did not print 'listening on <addr>' in time"
    stop_server
    return 1
}

# --- Run -------------------------------------------------------------------------

STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=$ROOT/bench/results
mkdir -p "$RESULTS_DIR"
TSV=$RESULTS_DIR/$STAMP.tsv
TABLE=$RESULTS_DIR/$STAMP.txt
printf 'server\tscenario\tmode\trate\tp50_us\tp99_us\tcpu_us_per_unit\tserver_cpu_pct\trss_kib\tloadgen_cpu_pct\n' >"$TSV"

note "duration ${DURATION}s per scenario; servers: $SERVERS; scenarios: $SCENARIOS"
for server in $SERVERS; do
    server_cmd "$server" || continue
    for scenario in $SCENARIOS; do
        scenario_args "$scenario"
        if ! start_server "$server"; then
            note "$server/$scenario: server failed to start, skipped"
            continue
        fi
        cpu_before=$(cpu_ticks "$SERVER_PID")
        t_before=$(date +%s.%N)
        if ! lg_out=$(timeout "$LOADGEN_TIMEOUT" "${PIN_LOADGEN[@]}" "$LOADGEN" "${SCENARIO_ARGS[@]}" \
            --addr "$SERVER_ADDR" 2>"$WORK/loadgen.err"); then
            note "$server/$scenario: load generator failed: $(tail -n 3 "$WORK/loadgen.err")"
            stop_server
            continue
        fi
        t_after=$(date +%s.%N)
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            note "$server/$scenario: server died during the run"
            stop_server
            continue
        fi
        cpu_after=$(cpu_ticks "$SERVER_PID")
        rss=$(status_kib "$SERVER_PID" VmHWM)
        stop_server

        result=$(grep '^RESULT ' <<<"$lg_out" || true)
        [[ -n $result ]] || { note "$server/$scenario: no RESULT line from the load generator"; continue; }
        echo "  $server/$scenario: $(grep -v '^RESULT ' <<<"$lg_out")"
        mode=$(result_field "$result" mode)
        # Server CPU per unit of work: microseconds per message (pingpong) or per
        # megabyte echoed (stream), over the whole load generator run.
        read -r rate cpu_unit cpu_pct < <(awk \
            -v mode="$mode" -v ticks=$((cpu_after - cpu_before)) -v hz="$CLK_TCK" \
            -v msgs="$(result_field "$result" messages)" -v bytes="$(result_field "$result" bytes)" \
            -v mps="$(result_field "$result" msgs_per_s)" -v mbps="$(result_field "$result" mb_per_s)" \
            -v wall="$(awk -v a="$t_before" -v b="$t_after" 'BEGIN { print b - a }')" '
            BEGIN {
                cpu_s = ticks / hz
                if (mode == "stream") { rate = mbps; units = bytes / 1e6 } else { rate = mps; units = msgs }
                printf "%s %s %.1f\n", rate, (units > 0 ? sprintf("%.3f", cpu_s * 1e6 / units) : "na"),
                    100 * cpu_s / wall
            }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$scenario" "$mode" "$rate" \
            "$(result_field "$result" p50_us)" "$(result_field "$result" p99_us)" "$cpu_unit" "$cpu_pct" \
            "$rss" "$(result_field "$result" client_cpu_pct)" >>"$TSV"
    done
done

# --- Report ----------------------------------------------------------------------

# Ratios compare each server with raw-mio and with asyncio on the same scenario of this
# run: rate ratios above 1 mean faster than the reference, CPU ratios above 1 mean more
# CPU per message (or per MB) than the reference.
{
    echo "torsion echo benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs," \
        "${DURATION}s per scenario, server on CPU $SERVER_CPU, loadgen on CPU $LOADGEN_CPU"
    awk -F'\t' '
        NR == 1 { next }
        {
            n++; srv[n] = $1; scn[n] = $2; mode[n] = $3; rate[n] = $4; p50[n] = $5; p99[n] = $6
            cpu[n] = $7; cpct[n] = $8; rss[n] = $9; lg[n] = $10
            if ($1 == "raw-mio") { raw_rate[$2] = $4; raw_cpu[$2] = $7 }
            if ($1 == "asyncio") { aio_rate[$2] = $4; aio_cpu[$2] = $7 }
        }
        function ratio(a, b) { return (b != "" && b != "na" && b + 0 > 0 && a != "na") ? sprintf("%.2fx", a / b) : "-" }
        function num(v, fmt) { return v == "na" ? "-" : sprintf(fmt, v) }
        END {
            fmt = "%-8s %-14s %14s %9s %9s %14s %8s %9s %7s %8s %8s %8s %8s\n"
            printf fmt, "server", "scenario", "throughput", "p50 us", "p99 us", "srv CPU", "srv CPU", \
                "peak RSS", "lg CPU", "rate/", "rate/", "cpu/", "cpu/"
            printf fmt, "", "", "", "", "", "per unit", "%", "MiB", "%", "raw-mio", "asyncio", \
                "raw-mio", "asyncio"
            for (i = 1; i <= n; i++) {
                unit = mode[i] == "stream" ? " MB/s" : " msg/s"
                cpu_unit = cpu[i] == "na" ? "-" : sprintf("%.2f us/%s", cpu[i], mode[i] == "stream" ? "MB" : "msg")
                printf fmt, srv[i], scn[i], sprintf(mode[i] == "stream" ? "%.1f" : "%.0f", rate[i]) unit, \
                    num(p50[i], "%.1f"), num(p99[i], "%.1f"), cpu_unit, num(cpct[i], "%.0f"), \
                    num(rss[i] / 1024, "%.1f"), num(lg[i], "%.0f"), \
                    ratio(rate[i], raw_rate[scn[i]]), ratio(rate[i], aio_rate[scn[i]]), \
                    ratio(cpu[i], raw_cpu[scn[i]]), ratio(cpu[i], aio_cpu[scn[i]])
            }
            if (n == 0) print "(no results)"
        }' "$TSV"
} | tee "$TABLE"
note "results: $TABLE (table) and $TSV (raw)"
