#!/usr/bin/env bash
# HTTP/1.1 benchmark: `wrk -t1 -c100 -d$DURATION` on /hello against torsion's http-server and a
# hyper HTTP/1 server (current_thread runtime), in three scenarios: keep-alive, 16-deep
# pipelining (bench/http_pipeline.lua) and `Connection: close` (one request per connection).
# The server is pinned to one CPU and wrk to the other. Rounds alternate (hyper, torsion, hyper,
# torsion, ...) so a neighbour's load hits both alike; the report gives medians of requests per
# second and of server CPU per request (utime+stime from /proc/PID/stat over the run), and the
# ratios torsion/hyper. twisted.web (from target/twisted-venv) is measured once per scenario for
# context.
#
#   bench/http.sh                     # 3 rounds of 5 s per scenario
#   BENCH_REPEAT=5 DURATION=10 bench/http.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_SCRIPT=bench/http.sh
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
DURATION=${DURATION:-5}
REPEAT=${BENCH_REPEAT:-3}
# shellcheck source=bench/common.sh
source bench/common.sh
check_seconds "$DURATION" DURATION
check_repeat "$REPEAT"
command -v wrk >/dev/null || die "wrk is not installed (Debian: apt-get install wrk)"
setup_work torsion-http-bench
pin_cpus
raise_fd_limit 4096

TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p torsion-examples --bin http-server
cargo build --release -q -p torsion-bench --bin hyper-hello
TWISTED_PY=${TORSION_TWISTED_PYTHON:-$PWD/target/twisted-venv/bin/python}

# start NAME CMD...: starts a server pinned to SERVER_CPU, sets PID and ADDR.
start() {
    local name=$1
    shift
    local out=$WORK/$name.out
    # Removed first: the previous run's file would otherwise announce the old port until the
    # new process has opened (and truncated) it.
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

# measure NAME SCENARIO CMD...: one wrk run against a fresh server; prints
# "NAME SCENARIO RPS CPU_US_PER_REQUEST".
measure() {
    local name=$1 scenario=$2
    shift 2
    start "$name" "$@"
    local extra=()
    case $scenario in
        keepalive) ;;
        pipelined16) extra=(-s bench/http_pipeline.lua) ;;
        close) extra=(-H "Connection: close") ;;
    esac
    # Warm-up, not measured.
    "${PIN_LOADGEN[@]}" wrk -t1 -c100 -d1 "${extra[@]}" "http://$ADDR/hello" >/dev/null 2>&1 || true
    local before after report requests rps
    before=$(cpu_ticks "$PID")
    if ! report=$("${PIN_LOADGEN[@]}" timeout $((${DURATION%.*} + 30)) wrk -t1 -c100 -d"$DURATION" "${extra[@]}" "http://$ADDR/hello" 2>&1); then
        note "$name $scenario: wrk failed: $report"
        kill -0 "$PID" 2>/dev/null && note "$name is still running" || note "$name has exited"
        tail -5 "$WORK/$name.err" >&2
        stop_pid "$PID"
        return 1
    fi
    after=$(cpu_ticks "$PID")
    stop_pid "$PID"
    if grep -q "Non-2xx\|Socket errors: connect [1-9]" <<<"$report"; then
        note "$name $scenario: errors reported by wrk:"
        grep "Non-2xx\|Socket errors" <<<"$report" >&2
    fi
    requests=$(awk '/requests in/ { print $1 }' <<<"$report")
    rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$report")
    awk -v n="$name" -v s="$scenario" -v r="$rps" -v q="$requests" -v t=$((after - before)) -v hz="$CLK_TCK" \
        'BEGIN { printf "%s %s %.0f %.3f\n", n, s, r, (q > 0 ? t / hz * 1e6 / q : 0) }'
}

RESULTS=$WORK/results
: >"$RESULTS"
for scenario in keepalive pipelined16 close; do
    for round in $(seq "$REPEAT"); do
        note "$scenario round $round/$REPEAT"
        # A failed run (reported above) is retried once; a second failure ends the script.
        measure hyper "$scenario" "$TARGET/release/hyper-hello" --listen 127.0.0.1:0 >>"$RESULTS" ||
            measure hyper "$scenario" "$TARGET/release/hyper-hello" --listen 127.0.0.1:0 >>"$RESULTS"
        measure torsion "$scenario" "$TARGET/release/http-server" --listen 127.0.0.1:0 --access-log false >>"$RESULTS" ||
            measure torsion "$scenario" "$TARGET/release/http-server" --listen 127.0.0.1:0 --access-log false >>"$RESULTS"
    done
    if [[ -x $TWISTED_PY ]] && "$TWISTED_PY" -c 'import twisted.web' 2>/dev/null; then
        measure twisted.web "$scenario" "$TWISTED_PY" bench/twisted_web.py >>"$RESULTS"
    else
        note "twisted.web skipped: no Twisted at $TWISTED_PY"
    fi
done

echo "# HTTP /hello, wrk -t1 -c100 -d$DURATION, server pinned to CPU $SERVER_CPU, $REPEAT alternating rounds (medians)"
echo "# machine: $(nproc) CPUs, shared with other work; load average $(cut -d' ' -f1-3 /proc/loadavg)"
awk "$AWK_LIB"'
{ rps[$1 " " $2] = rps[$1 " " $2] " " $3; cpu[$1 " " $2] = cpu[$1 " " $2] " " $4; seen[$2] = 1 }
END {
    printf "%-12s %-12s %12s %14s\n", "scenario", "server", "req/s", "CPU us/req"
    split("keepalive pipelined16 close", order, " ")
    for (k = 1; k <= 3; k++) {
        s = order[k]
        if (!(s in seen)) continue
        split("hyper torsion twisted.web", names, " ")
        for (i = 1; i <= 3; i++) {
            key = names[i] " " s
            if (!(key in rps)) continue
            r[names[i]] = median_words(rps[key]); c[names[i]] = median_words(cpu[key])
            printf "%-12s %-12s %12.0f %14.2f\n", s, names[i], r[names[i]], c[names[i]]
        }
        if (r["hyper"] > 0 && c["hyper"] > 0)
            printf "%-12s %-12s %11.2fx %13.2fx\n", s, "torsion/hyper", r["torsion"] / r["hyper"], c["torsion"] / c["hyper"]
        delete r; delete c
    }
}' "$RESULTS"
echo "# raw rounds (server scenario req/s CPU-us/req):"
cat "$RESULTS"
