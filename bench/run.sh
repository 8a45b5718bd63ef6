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
#   BENCH_SCENARIOS  scenarios, from: pp64-c100 pp64-c1000 stream64k-c10 unix-pp64-c100
#                    unix-stream64k-c10 udp-pp64 (default: all). The unix-* ones run over a
#                    Unix socket, for raw-mio and torsion only. udp-pp64 is UDP ping-pong
#                    (100 client sockets, 64-byte datagrams): raw-mio-udp-echo, torsion's
#                    udp-echo and asyncio_udp_echo.py (no tokio server).
#   BENCH_BUILD      set to 0 to skip the cargo builds
#   BENCH_SERVER_CPU / BENCH_LOADGEN_CPU   CPUs to pin to (default 0 and 1)
#   CARGO_TARGET_DIR where the release binaries are (default: <workspace>/target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ALL_SERVERS="raw-mio torsion tokio asyncio"
# Servers that can listen on a Unix socket (the others are skipped in unix-* scenarios).
UNIX_SERVERS="raw-mio torsion"
# Servers with a UDP echo (udp-* scenarios).
UDP_SERVERS="raw-mio torsion asyncio"
UDP_SCENARIOS="udp-pp64"
DURATION=${BENCH_DURATION:-5}
SERVERS=${BENCH_SERVERS:-$ALL_SERVERS}
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

SCENARIOS=${BENCH_SCENARIOS:-$ECHO_SCENARIOS $UDP_SCENARIOS}
check_names BENCH_SERVERS "$ALL_SERVERS" "$SERVERS"
check_names BENCH_SCENARIOS "$ECHO_SCENARIOS $UDP_SCENARIOS" "$SCENARIOS"
check_seconds "$DURATION" BENCH_DURATION
# Hard wall-clock bound for one load generator run: measurement plus generous setup time.
LOADGEN_TIMEOUT=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d + 60 }')

# --- Environment -----------------------------------------------------------------

# 1000 connections need more than the usual 1024 descriptors, in both the server and
# the load generator (both inherit this shell's limit).
raise_fd_limit 4096
# Pin the server and the load generator to different cores, if we can.
pin_cpus

# The real interpreter, not a wrapper (such as a pyenv shim) that would run extra
# processes at startup.
PYTHON=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || PYTHON=

# --- Build -----------------------------------------------------------------------

if [[ $BUILD != 0 ]]; then
    note "building torsion-bench (release)"
    cargo build --release -p torsion-bench || die "cargo build -p torsion-bench failed"
    note "building torsion echo-server (release)"
    if ! cargo build --release -p torsion-examples --bin echo-server --bin udp-echo; then
        note "could not build the torsion echo-server; it will be skipped if no binary exists"
    fi
fi
[[ -x $LOADGEN ]] || die "$LOADGEN not found (build with: cargo build --release -p torsion-bench)"

# --- Servers ---------------------------------------------------------------------

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
        *) die "unknown server '$1' (known: $ALL_SERVERS)" ;;
    esac
    [[ -x $bin ]] || { note "skipping $1: $bin does not exist"; return 1; }
    SERVER_CMD=("$bin")
}

# Sets SERVER_CMD to the UDP echo of server $1 (udp-* scenarios); fails if unavailable.
udp_server_cmd() {
    local bin
    case $1 in
        raw-mio) bin=$RELEASE/raw-mio-udp-echo ;;
        torsion) bin=$RELEASE/udp-echo ;;
        asyncio)
            [[ -n $PYTHON ]] || { note "skipping asyncio: python3 not found"; return 1; }
            SERVER_CMD=("$PYTHON" "$ROOT/bench/asyncio_udp_echo.py")
            return 0
            ;;
        *) return 1 ;;
    esac
    [[ -x $bin ]] || { note "skipping $1: $bin does not exist"; return 1; }
    SERVER_CMD=("$bin")
}

# --- Run -------------------------------------------------------------------------

setup_work torsion-bench
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=$ROOT/bench/results
mkdir -p "$RESULTS_DIR"
TSV=$RESULTS_DIR/$STAMP.tsv
TABLE=$RESULTS_DIR/$STAMP.txt
printf 'server\tscenario\t%s\n' "$ECHO_ROW_HEADER" >"$TSV"

note "duration ${DURATION}s per scenario; servers: $SERVERS; scenarios: $SCENARIOS"
UNIX_SKIPPED=
for server in $SERVERS; do
    for scenario in $SCENARIOS; do
        scenario_args "$scenario"
        if [[ $SCENARIO_TRANSPORT == unix && " $UNIX_SERVERS " != *" $server "* ]]; then
            UNIX_SKIPPED+=" $server/$scenario"
            continue
        fi
        if [[ $SCENARIO_TRANSPORT == udp ]]; then
            [[ " $UDP_SERVERS " == *" $server "* ]] || { UNIX_SKIPPED+=" $server/$scenario"; continue; }
            udp_server_cmd "$server" || continue
        else
            server_cmd "$server" || continue
        fi
        if run_echo "$server" "$scenario" "${SERVER_CMD[@]}"; then
            printf '%s\t%s\t%s\n' "$server" "$scenario" "$ECHO_ROW" >>"$TSV"
        else
            note "$server/$scenario: skipped"
        fi
    done
done
[[ -z $UNIX_SKIPPED ]] ||
    note "skipped (tokio-echo and asyncio_echo.py listen on TCP only; tokio has no UDP echo):$UNIX_SKIPPED"

# --- Report ----------------------------------------------------------------------

# Ratios compare each server with raw-mio and with asyncio on the same scenario of this
# run: rate ratios above 1 mean faster than the reference, CPU ratios above 1 mean more
# CPU per message (or per MB) than the reference.
{
    echo "torsion echo benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs," \
        "${DURATION}s per scenario, server on CPU $SERVER_CPU, loadgen on CPU $LOADGEN_CPU"
    awk -F'\t' "$AWK_LIB"'
        NR == 1 { next }
        {
            n++; srv[n] = $1; scn[n] = $2; mode[n] = $3; rate[n] = $4; p50[n] = $5; p99[n] = $6
            cpu[n] = $7; cpct[n] = $8; rss[n] = $9; lg[n] = $10
            if ($1 == "raw-mio") { raw_rate[$2] = $4; raw_cpu[$2] = $7 }
            if ($1 == "asyncio") { aio_rate[$2] = $4; aio_cpu[$2] = $7 }
            if ($2 ~ /^unix-/) unix = 1
            if ($2 ~ /^udp-/) udp = 1
        }
        END {
            fmt = "%-8s %-18s %14s %9s %9s %14s %8s %9s %7s %8s %8s %8s %8s\n"
            printf fmt, "server", "scenario", "throughput", "p50 us", "p99 us", "srv CPU", "srv CPU", \
                "peak RSS", "lg CPU", "rate/", "rate/", "cpu/", "cpu/"
            printf fmt, "", "", "", "", "", "per unit", "%", "MiB", "%", "raw-mio", "asyncio", \
                "raw-mio", "asyncio"
            for (i = 1; i <= n; i++) {
                unit = mode[i] == "stream" ? " MB/s" : " msg/s"
                printf fmt, srv[i], scn[i], num(rate[i], mode[i] == "stream" ? "%.1f" : "%.0f") unit, \
                    num(p50[i], "%.1f"), num(p99[i], "%.1f"), per(cpu[i], mode[i]), num(cpct[i], "%.0f"), \
                    (ok(rss[i]) ? sprintf("%.1f", rss[i] / 1024) : "-"), num(lg[i], "%.0f"), \
                    ratio(rate[i], raw_rate[scn[i]]), ratio(rate[i], aio_rate[scn[i]]), \
                    ratio(cpu[i], raw_cpu[scn[i]]), ratio(cpu[i], aio_cpu[scn[i]])
            }
            if (n == 0) print "(no results)"
            if (unix) print "unix-*: over a Unix socket (raw-mio and torsion only); ratios to raw-mio in the same Unix scenario"
            if (udp) print "udp-pp64: datagrams/s (msg/s) and server CPU per datagram; raw-mio is raw-mio-udp-echo"
        }' "$TSV"
} | tee "$TABLE"
note "results: $TABLE (table) and $TSV (raw)"
