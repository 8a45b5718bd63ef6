#!/usr/bin/env bash
# TLS benchmark (issue 11): torsion's echo-server over TLS against a tokio-rustls echo server
# (current_thread, same rustls version and ring provider), measured in the same run, in
# alternating rounds (torsion first in odd rounds, tokio-rustls first in even ones), medians
# reported.
#
#   bash bench/tls.sh
#
# Scenarios (bench/src/bin/tls-loadgen.rs, rustls' blocking client, one thread per connection):
#   handshake-c4   new connection, full TLS 1.3 handshake, one 64 B echo, close: handshakes/s and
#                  server CPU per handshake; the client offers the ring provider's default key
#                  exchange list, which rustls 0.23.48 starts with P-384 (a millisecond of CPU
#                  per handshake on each side)
#   x25519-c4      the same with a client that offers only X25519, as browsers, curl and
#                  OpenSSL do first
#   stream64k-c10  10 connections each echoing 64 KiB blocks: MB/s and server CPU per MB; also
#                  run over plain TCP against torsion, for the TLS/plaintext ratio
#   pp64-c100      100 connections ping-ponging 64 B: messages/s and server CPU per message
# and bench/src/bin/tls-record-cost.rs: rustls' record protection alone (AES-256-GCM, the suite
# negotiated) per MB echoed, the part of a TLS echo's cost no server can avoid.
# Server CPU is utime+stime from /proc/PID/stat around the measured window; each raw row also
# gives the hypervisor's steal ticks on the server's CPU over the window (a VM's CPU stolen by
# the host: that run was disturbed), and the summary lists the runs that had any.
#
# Environment: BENCH_DURATION (seconds per run, default 4), BENCH_ROUNDS (default 3),
# BENCH_BUILD=0 to skip the builds, BENCH_SERVER_CPU / BENCH_LOADGEN_CPU, CARGO_TARGET_DIR,
# BENCH_TLS_SCENARIOS (default "handshake x25519 stream pingpong": any subset, in that order;
# not BENCH_SCENARIOS, which bench/report sets for its own scenarios).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DURATION=${BENCH_DURATION:-4}
ROUNDS=${BENCH_ROUNDS:-3}
BUILD=${BENCH_BUILD:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RELEASE=$TARGET_DIR/release
SCENARIOS=${BENCH_TLS_SCENARIOS:-handshake x25519 stream pingpong}
for scenario in $SCENARIOS; do
    case $scenario in
        handshake | x25519 | stream | pingpong) ;;
        *) echo "tls.sh: unknown scenario $scenario (handshake, x25519, stream, pingpong)" >&2; exit 1 ;;
    esac
done
STARTUP_TENTHS=100
BENCH_SCRIPT=tls.sh
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"

raise_fd_limit 4096
pin_cpus
setup_work torsion-tls-bench
command -v openssl >/dev/null || die "the openssl CLI is needed to make the benchmark's certificates"

if [[ $BUILD != 0 ]]; then
    cargo build --release -p torsion-bench --bin tokio-rustls-echo --bin tls-loadgen --bin tls-record-cost ||
        die "build failed"
    cargo build --release -p torsion-examples --bin echo-server || die "build failed"
fi

# A CA and a localhost certificate (ECDSA P-256), made fresh for this run.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/ca.key" \
    -out "$WORK/ca.pem" -days 1 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/key.pem" \
    -out "$WORK/req.pem" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$WORK/ext.cnf"
openssl x509 -req -in "$WORK/req.pem" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -out "$WORK/cert.pem" -days 1 -extfile "$WORK/ext.cnf" 2>/dev/null
TLS_ARGS=(--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")

# Steal ticks of the server's CPU (the whole machine's when unpinned): time the hypervisor ran
# something else while this VM's CPU wanted to run. A round with steal was disturbed.
STEAL_LINE=cpu
[[ ${#PIN_SERVER[@]} -gt 0 ]] && STEAL_LINE=cpu$SERVER_CPU
steal_ticks() { awk -v line="$STEAL_LINE" '$1 == line { print $9 }' /proc/stat; }

# run_one SERVER SCENARIO CONNS [LOADGEN ARGS...]: one measured run; prints "SERVER SCENARIO
# COUNT SECONDS TICKS STEAL". The x25519 scenario is the handshake one with `--kx x25519`.
run_one() {
    local server=$1 scenario=$2 conns=$3 pid before after steal_before steal_after line
    shift 3
    local extra=("$@") mode=$scenario
    if [[ $scenario == x25519 ]]; then
        mode=handshake
        extra+=(--kx x25519)
    fi
    case $server in
        torsion) start_server torsion server 127.0.0.1:0 "$RELEASE/echo-server" "${TLS_ARGS[@]}" ;;
        torsion-plain) start_server torsion-plain server 127.0.0.1:0 "$RELEASE/echo-server" ;;
        tokio-rustls) start_server tokio-rustls server 127.0.0.1:0 "$RELEASE/tokio-rustls-echo" "${TLS_ARGS[@]}" ;;
    esac
    pid=$STARTED_PID
    before=$(cpu_ticks "$pid")
    # The window starts one second after the generator (its warm-up): sample CPU around it.
    "${PIN_LOADGEN[@]}" "$RELEASE/tls-loadgen" --connect "$STARTED_ADDR" --ca "$WORK/ca.pem" \
        --scenario "$mode" --conns "$conns" --seconds "$DURATION" "${extra[@]}" >"$WORK/lg.out" 2>"$WORK/lg.err" &
    local lg=$!
    sleep 1
    before=$(cpu_ticks "$pid")
    steal_before=$(steal_ticks)
    sleep "$DURATION"
    after=$(cpu_ticks "$pid")
    steal_after=$(steal_ticks)
    wait "$lg" || note "$server $scenario: the load generator failed: $(tail -n 2 "$WORK/lg.err")"
    line=$(cat "$WORK/lg.out")
    stop_pid "$pid"
    echo "$server $scenario ${line#count=} $((after - before)) $((steal_after - steal_before))" |
        sed 's/ seconds=/ /'
}

RESULTS=$WORK/results
: >"$RESULTS"
for round in $(seq "$ROUNDS"); do
    note "round $round of $ROUNDS"
    # Odd rounds start with torsion, even rounds with tokio-rustls, so neither always runs
    # first (after the other's thousands of closed handshake connections, or a cold start).
    order="torsion tokio-rustls"
    ((round % 2 == 0)) && order="tokio-rustls torsion"
    for server in $order; do
        for scenario in $SCENARIOS; do
            case $scenario in
                handshake | x25519) run_one "$server" "$scenario" 4 | tee -a "$RESULTS" ;;
                stream) run_one "$server" stream 10 | tee -a "$RESULTS" ;;
                pingpong) run_one "$server" pingpong 100 | tee -a "$RESULTS" ;;
            esac
        done
    done
    if [[ " $SCENARIOS " == *" stream "* ]]; then
        run_one torsion-plain stream 10 --plain | tee -a "$RESULTS"
    fi
done

# The floor under any rustls echo server's stream cost, on the server's CPU.
RECORD_COST=$("${PIN_SERVER[@]}" "$RELEASE/tls-record-cost" | awk -F= '/AES_256_GCM/ {print $2}')

TICK=$(getconf CLK_TCK)
python3 - "$RESULTS" "$TICK" "$RECORD_COST" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
tick = 1.0 / float(sys.argv[2])
data = {}
stolen = []
for server, scenario, count, seconds, ticks, steal in rows:
    count, seconds, cpu = float(count), float(seconds), float(ticks) * tick
    data.setdefault((server, scenario), []).append((count / seconds, cpu / count if count else float("nan")))
    if int(steal) > 0:
        stolen.append(f"{server} {scenario} {int(steal) * tick * 1000:.0f} ms")
def med(server, scenario, i):
    return statistics.median(v[i] for v in data[(server, scenario)])
units = {"handshake": ("handshakes/s", 1e6, "µs CPU/handshake"),
         "x25519": ("handshakes/s", 1e6, "µs CPU/handshake"), "stream": ("MB/s", 1e6 * 1e6, "µs CPU/MB"),
         "pingpong": ("msgs/s", 1e6, "µs CPU/msg")}
print(f"{'scenario':<10} {'server':<14} {'rate':>14} {'server CPU':>22}")
for scenario in ("handshake", "x25519", "stream", "pingpong"):
    if ("torsion", scenario) not in data:
        continue
    name, scale, cpu_name = units[scenario]
    for server in ("torsion", "tokio-rustls", "torsion-plain"):
        if (server, scenario) not in data:
            continue
        rate = med(server, scenario, 0)
        per = med(server, scenario, 1) * (1e6 if scenario != "stream" else 1e6 * 1e6)
        if scenario == "stream":
            rate /= 1e6
        print(f"{scenario:<10} {server:<14} {rate:>10.1f} {name:<12} {per:>8.2f} {cpu_name}")
    cpu_ratio = med("torsion", scenario, 1) / med("tokio-rustls", scenario, 1)
    rate_ratio = med("torsion", scenario, 0) / med("tokio-rustls", scenario, 0)
    # Interference from anything else on the machine only adds CPU per unit: each server's
    # best run is the other steady figure.
    best = min(v[1] for v in data[("torsion", scenario)]) / min(v[1] for v in data[("tokio-rustls", scenario)])
    print(f"  {scenario}: torsion/tokio-rustls CPU per unit {cpu_ratio:.2f}x (best runs {best:.2f}x), rate {rate_ratio:.2f}x")
if ("torsion-plain", "stream") in data:
    plain_rate, plain_cpu = med("torsion-plain", "stream", 0), med("torsion-plain", "stream", 1) * 1e12
    print(f"  stream: torsion TLS / torsion plaintext MB/s {med('torsion', 'stream', 0) / plain_rate:.2f}x"
          f" (tokio-rustls TLS / torsion plaintext {med('tokio-rustls', 'stream', 0) / plain_rate:.2f}x)")
    if sys.argv[3]:
        record = float(sys.argv[3])
        tls_cpu = med("torsion", "stream", 1) * 1e12
        print(f"  stream: rustls' record protection alone (AES-256-GCM) {record:.0f} µs/MB echoed; torsion TLS"
              f" {tls_cpu:.0f} = plaintext {plain_cpu:.0f} + records {record:.0f} + rest {tls_cpu - plain_cpu - record:.0f}")
print(f"  (medians of {len(next(iter(data.values())))} alternating rounds; the machine may be shared)")
if stolen:
    print(f"  hypervisor steal on the server's CPU in {len(stolen)} of {len(rows)} runs: {', '.join(stolen)}")
else:
    print(f"  no hypervisor steal on the server's CPU in any of the {len(rows)} runs")
PY
