#!/usr/bin/env bash
# Proxy benchmark: torsion's `proxy` example against direct echo, in one run.
#
#   bash bench/proxy.sh
#
# Throughput scenarios (stream64k-c10, pp64-c100) run twice, back to back:
#   direct: echo-server pinned to CPU 0, load generator pinned to CPU 1;
#   proxy:  proxy pinned to CPU 0, forwarding to an echo-server (the backend) that
#           shares CPU 1 with the load generator; the load generator targets the proxy.
# Each server's CPU time (utime + stime from /proc/PID/stat) is sampled around the load
# run, and the table gives the proxy run as ratios of the direct run.
#
# Memory scenario (slowsink-c100): the proxy (CPU 0) forwards to `slow-sink`, which reads
# only 64 KiB per connection every 100 ms, while `loadgen flood` (CPU 1) writes to 100
# connections as fast as they accept (after holding them open, idle, for 1 s). The
# proxy's VmRSS is sampled every 0.1 s; the report gives its RSS without connections and
# with 100 idle pairs, its peak (VmHWM), and the bound its buffers should respect.
#
# See bench/README.md for what each figure means.
#
# Environment:
#   BENCH_DURATION        seconds of measurement per run (default 5; decimals allowed)
#   BENCH_SCENARIOS       from: stream64k-c10 pp64-c100 slowsink-c100 (default: all)
#   BENCH_FLOOD_DURATION  seconds of flooding in slowsink-c100 (default: BENCH_DURATION, but
#                         at least 5: the kernel's socket buffers take a second or two to
#                         fill before the proxy's own buffers do)
#   BENCH_REPEAT          repetitions of each throughput scenario (default 1); the table
#                         shows medians, the .tsv every run
#   BENCH_BUILD           set to 0 to skip the cargo builds
#   BENCH_SERVER_CPU / BENCH_LOADGEN_CPU   CPUs to pin to (default 0 and 1)
#   CARGO_TARGET_DIR      where the release binaries are (default: <workspace>/target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

ALL_SCENARIOS="stream64k-c10 pp64-c100 slowsink-c100"
DURATION=${BENCH_DURATION:-5}
SCENARIOS=${BENCH_SCENARIOS:-$ALL_SCENARIOS}
FLOOD_DURATION=${BENCH_FLOOD_DURATION:-}
REPEAT=${BENCH_REPEAT:-1}
BUILD=${BENCH_BUILD:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RELEASE=$TARGET_DIR/release
LOADGEN=$RELEASE/loadgen
ECHO=$RELEASE/echo-server
PROXY=$RELEASE/proxy
SINK=$RELEASE/slow-sink
# Longest a server may take to print its `listening on` line, in tenths of a second.
STARTUP_TENTHS=100

# The memory scenario's shape, and the bound the proxy's buffers must respect. Per pair
# and per direction a write buffer holds at most the high watermark plus one read (the
# reactor checks the mark after each read, and a read is at most the loop's read buffer):
# torsion_transports::DEFAULT_HIGH_WATERMARK and torsion_reactor::DEFAULT_READ_BUFFER.
FLOOD_CONNS=100
FLOOD_SIZE=65536
# Seconds the flood's connections stay open and idle before the flood starts.
FLOOD_IDLE=1
SINK_READ_BYTES=65536
SINK_INTERVAL_MS=100
HIGH_WATERMARK_KIB=64
READ_BUFFER_KIB=256

BENCH_SCRIPT=proxy.sh
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"

check_names BENCH_SCENARIOS "$ALL_SCENARIOS" "$SCENARIOS"
check_repeat "$REPEAT"
check_seconds "$DURATION" BENCH_DURATION
if [[ -z $FLOOD_DURATION ]]; then
    FLOOD_DURATION=$(awk -v d="$DURATION" 'BEGIN { print (d < 5 ? 5 : d) }')
fi
check_seconds "$FLOOD_DURATION" BENCH_FLOOD_DURATION
# Hard wall-clock bounds for one load generator run: measurement plus generous setup time.
LOADGEN_TIMEOUT=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d + 60 }')
FLOOD_TIMEOUT=$(awk -v d="$FLOOD_DURATION" -v i="$FLOOD_IDLE" 'BEGIN { printf "%d", d + i + 60 }')

# --- Environment -----------------------------------------------------------------

# 100 proxied pairs need about 400 descriptors in all; raise the soft limit if it is low.
raise_fd_limit 4096
# Pin the proxy (or the direct echo server) and the client side to different cores.
pin_cpus

# --- Build -----------------------------------------------------------------------

if [[ $BUILD != 0 ]]; then
    note "building torsion-bench (release)"
    cargo build --release -p torsion-bench || die "cargo build -p torsion-bench failed"
    note "building torsion echo-server and proxy (release)"
    cargo build --release -p torsion-examples --bin echo-server --bin proxy ||
        die "cargo build -p torsion-examples --bin echo-server --bin proxy failed"
fi
for bin in "$LOADGEN" "$ECHO" "$PROXY" "$SINK"; do
    [[ -x $bin ]] || die "$bin not found (build with: cargo build --release -p torsion-bench;" \
        "cargo build --release -p torsion-examples --bin echo-server --bin proxy)"
done

# --- Process control -------------------------------------------------------------

# Every process is started with common.sh's start_server (on 127.0.0.1:0) and stopped by
# PID with stop_pid / stop_all; WORK holds their output.
setup_work torsion-proxy-bench

# Prints the number of open file descriptors of process $1.
fd_count() {
    local fds=("/proc/$1/fd/"*)
    echo "${#fds[@]}"
}

# --- Run -------------------------------------------------------------------------

STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=$ROOT/bench/results
mkdir -p "$RESULTS_DIR"
TSV=$RESULTS_DIR/proxy-$STAMP.tsv
RSS_TSV=$RESULTS_DIR/proxy-$STAMP-rss.tsv
TABLE=$RESULTS_DIR/proxy-$STAMP.txt
printf 'scenario\tpath\tmode\trate\tp50_us\tp99_us\tproxy_cpu_per_unit\tproxy_cpu_pct\techo_cpu_per_unit\techo_cpu_pct\tloadgen_cpu_pct\trep\n' \
    >"$TSV"
MEMORY_SUMMARY=

# Runs throughput scenario $1 along path $2 (direct or proxy) as repetition $3 and
# appends a row to $TSV.
run_throughput() {
    local scenario=$1 path=$2 rep=$3 echo_pid proxy_pid='' target result
    local echo_before proxy_before=0 echo_after proxy_after=0 t_before t_after wall
    local echo_unit echo_pct proxy_unit=na proxy_pct=na
    scenario_args "$scenario"
    if [[ $path == direct ]]; then
        start_server echo-server server 127.0.0.1:0 "$ECHO" || return 1
        echo_pid=$STARTED_PID
        target=$STARTED_ADDR
    else
        # The backend shares the load generator's core, so the proxy has CPU 0 to itself.
        start_server echo-server loadgen 127.0.0.1:0 "$ECHO" || return 1
        echo_pid=$STARTED_PID
        if ! start_server proxy server 127.0.0.1:0 "$PROXY" --target "$STARTED_ADDR"; then
            stop_pid "$echo_pid"
            return 1
        fi
        proxy_pid=$STARTED_PID
        target=$STARTED_ADDR
        proxy_before=$(cpu_ticks "$proxy_pid")
    fi
    echo_before=$(cpu_ticks "$echo_pid")
    t_before=$(date +%s.%N)
    if ! run_loadgen "$scenario/$path" "$target"; then
        stop_all
        return 1
    fi
    t_after=$(date +%s.%N)
    if ! kill -0 "$echo_pid" 2>/dev/null || { [[ -n $proxy_pid ]] && ! kill -0 "$proxy_pid" 2>/dev/null; }; then
        note "$scenario/$path: a server died during the run"
        stop_all
        return 1
    fi
    echo_after=$(cpu_ticks "$echo_pid")
    [[ -z $proxy_pid ]] || proxy_after=$(cpu_ticks "$proxy_pid")
    # The proxy first, so that the backend sees its clients leave.
    [[ -z $proxy_pid ]] || stop_pid "$proxy_pid"
    stop_pid "$echo_pid"

    result=$LG_RESULT
    echo "  $scenario/$path #$rep: $LG_HUMAN" >&2
    wall=$(awk -v a="$t_before" -v b="$t_after" 'BEGIN { print b - a }')
    read -r echo_unit echo_pct < <(cpu_per_unit $((echo_after - echo_before)) "$result" "$wall")
    if [[ -n $proxy_pid ]]; then
        read -r proxy_unit proxy_pct < <(cpu_per_unit $((proxy_after - proxy_before)) "$result" "$wall")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$path" \
        "$(result_field "$result" mode)" "$(result_rate "$result")" \
        "$(result_field "$result" p50_us)" "$(result_field "$result" p99_us)" "$proxy_unit" "$proxy_pct" \
        "$echo_unit" "$echo_pct" "$(result_field "$result" client_cpu_pct)" "$rep" >>"$TSV"
}

# The memory scenario: a flood through the proxy into a slow sink. Sets MEMORY_SUMMARY.
run_memory() {
    local sink_pid proxy_pid lg_pid empty_rss empty_fds rss fds ticks hwm peak=0
    local samples=0 max_samples t0 t1 now status=0 result cpu_after stats
    start_server slow-sink loadgen 127.0.0.1:0 "$SINK" --read-bytes "$SINK_READ_BYTES" \
        --interval-ms "$SINK_INTERVAL_MS" || return 1
    sink_pid=$STARTED_PID
    if ! start_server proxy server 127.0.0.1:0 "$PROXY" --target "$STARTED_ADDR"; then
        stop_pid "$sink_pid"
        return 1
    fi
    proxy_pid=$STARTED_PID
    sleep 0.2
    empty_rss=$(status_kib "$proxy_pid" VmRSS)
    empty_fds=$(fd_count "$proxy_pid")
    printf 't_s\trss_kib\tfds\tcpu_ticks\n' >"$RSS_TSV"
    t0=$(date +%s.%N)
    # The load generator opens all connections, holds them idle for FLOOD_IDLE seconds
    # (the samples of that pause give the RSS of idle pairs), then floods.
    timeout "$FLOOD_TIMEOUT" "${PIN_LOADGEN[@]}" "$LOADGEN" flood --conns "$FLOOD_CONNS" --size "$FLOOD_SIZE" \
        --idle "$FLOOD_IDLE" --duration "$FLOOD_DURATION" --addr "$STARTED_ADDR" \
        >"$WORK/flood.out" 2>"$WORK/flood.err" &
    lg_pid=$!
    PIDS+=("$lg_pid")
    # Sample until the flood ends; `timeout` bounds it, and so does the sample count.
    max_samples=$((FLOOD_TIMEOUT * 10 + 20))
    while kill -0 "$lg_pid" 2>/dev/null && ((samples < max_samples)); do
        rss=$(status_kib "$proxy_pid" VmRSS) || break
        fds=$(fd_count "$proxy_pid")
        ticks=$(cpu_ticks "$proxy_pid") || break
        now=$(date +%s.%N)
        printf '%s\t%s\t%s\t%s\n' "$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.2f", b - a }')" "$rss" \
            "$fds" "$ticks" >>"$RSS_TSV"
        if ((rss > peak)); then peak=$rss; fi
        samples=$((samples + 1))
        sleep 0.1
    done
    wait "$lg_pid" || status=$?
    stop_pid "$lg_pid"
    if ((status != 0)); then
        note "slowsink-c100: load generator failed (status $status): $(tail -n 3 "$WORK/flood.err")"
        stop_all
        return 1
    fi
    if ! kill -0 "$proxy_pid" 2>/dev/null; then
        note "slowsink-c100: the proxy died during the run"
        stop_all
        return 1
    fi
    cpu_after=$(cpu_ticks "$proxy_pid")
    t1=$(date +%s.%N)
    hwm=$(status_kib "$proxy_pid" VmHWM)
    # VmHWM is maintained lazily by the kernel; a sample can be slightly above it.
    if ((hwm > peak)); then peak=$hwm; fi
    stop_pid "$sink_pid"
    stop_pid "$proxy_pid"

    result=$(grep '^RESULT ' "$WORK/flood.out" || true)
    [[ -n $result ]] || { note "slowsink-c100: no RESULT line from the load generator"; return 1; }
    echo "  slowsink-c100/proxy: $(grep -v '^RESULT ' "$WORK/flood.out")" >&2
    # From the samples: the last one of the idle pause (RSS, descriptors, CPU and time
    # with every pair connected but idle), the most descriptors seen, and the mean and
    # range of the flood's last second (the plateau, if reached).
    stats=$(awk -F'\t' -v idle="$FLOOD_IDLE" '
        NR == 1 { next }
        {
            n++; t[n] = $1; r[n] = $2
            if ($3 > max_fds) max_fds = $3
            if ($1 < idle - 0.1) { p_rss = $2; p_fds = $3; p_cpu = $4; p_t = $1 }
        }
        END {
            for (i = 1; i <= n; i++) {
                if (t[i] < t[n] - 1) continue
                s += r[i]; k++
                if (k == 1 || r[i] < lo) lo = r[i]
                if (r[i] > hi) hi = r[i]
            }
            if (p_t == "") { p_rss = "na"; p_fds = "na"; p_cpu = "na"; p_t = "na" }
            printf "%s %s %s %s %d ", p_rss, p_fds, p_cpu, p_t, max_fds
            if (k > 0) printf "%.1f %.1f %.1f\n", s / k / 1024, lo / 1024, hi / 1024; else print "na na na"
        }' "$RSS_TSV")
    MEMORY_SUMMARY=$(awk -v stats="$stats" -v empty="$empty_rss" -v empty_fds="$empty_fds" -v peak="$peak" \
        -v samples="$samples" -v conns="$FLOOD_CONNS" -v dur="$FLOOD_DURATION" -v high="$HIGH_WATERMARK_KIB" \
        -v rbuf="$READ_BUFFER_KIB" -v sink_bytes="$SINK_READ_BYTES" -v sink_ms="$SINK_INTERVAL_MS" \
        -v mbps="$(result_field "$result" mb_per_s)" -v bytes="$(result_field "$result" bytes)" \
        -v cpu_after="$cpu_after" -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" '
        BEGIN {
            split(stats, st, " ")
            pairs_rss = st[1]; pairs_fds = st[2]; pairs_cpu = st[3]; pairs_t = st[4]; max_fds = st[5]
            bound = conns * (high + rbuf)
            # Without a sample from the idle pause, growth is measured from the empty proxy.
            base = pairs_rss == "na" ? empty : pairs_rss
            printf "slowsink-c100: %d connection pairs through the proxy; the client floods them (64 KiB writes)" \
                " for %s s, the backend reads %d KiB per connection every %d ms\n", \
                conns, dur, sink_bytes / 1024, sink_ms
            printf "  proxy peak RSS            %7.1f MiB   (VmHWM, or the largest of %d VmRSS samples taken" \
                " about every 0.1 s)\n", peak / 1024, samples
            printf "  proxy RSS, no connections %7.1f MiB   (after startup)\n", empty / 1024
            if (pairs_rss != "na")
                printf "  proxy RSS, idle pairs     %7.1f MiB   (%d pairs connected, before the flood: %.1f KiB" \
                    " per pair)\n", pairs_rss / 1024, (pairs_fds - empty_fds) / 2, (pairs_rss - empty) / conns
            printf "  growth in the flood       %7.1f MiB   (peak minus %s: %.0f KiB per pair, %.2fx the bound)\n", \
                (peak - base) / 1024, pairs_rss == "na" ? "no connections" : "idle pairs", \
                (peak - base) / conns, (peak - base) / bound
            printf "  bound on the buffers      %7.1f MiB   (%d pairs x (%d KiB high mark + %d KiB read)," \
                " client->backend; both ways %.1f MiB)\n", bound / 1024, conns, high, rbuf, 2 * bound / 1024
            printf "  RSS in the last 1 s       %7s MiB   (mean of the samples; range %s to %s MiB)\n", \
                st[6], st[7], st[8]
            printf "  pairs open at the peak    %7d       (%d descriptors open in the proxy, %d without connections)\n", \
                (max_fds - empty_fds) / 2, max_fds, empty_fds
            if (pairs_cpu != "na")
                printf "  proxy CPU                 %7.1f %%     of one core during the flood\n", \
                    100 * (cpu_after - pairs_cpu) / hz / (t1 - t0 - pairs_t)
            printf "  written by the client     %7.0f MB    (%.1f MB/s, mostly filling kernel socket buffers;" \
                " the sink drains %.1f MB/s)\n", bytes / 1e6, mbps, conns * sink_bytes * 1000 / sink_ms / 1e6
        }')
}

note "duration ${DURATION}s per run (flood ${FLOOD_DURATION}s), $REPEAT repetition(s); scenarios: $SCENARIOS"
for ((rep = 1; rep <= REPEAT; rep++)); do
    for scenario in $SCENARIOS; do
        [[ $scenario != slowsink-c100 ]] || continue
        run_throughput "$scenario" direct "$rep" || note "$scenario/direct: skipped"
        run_throughput "$scenario" proxy "$rep" || note "$scenario/proxy: skipped"
    done
done
if [[ " $SCENARIOS " == *" slowsink-c100 "* ]]; then
    run_memory || note "slowsink-c100: skipped"
fi

# --- Report ----------------------------------------------------------------------

# Ratios compare the proxy path with the direct path of the same scenario in this run:
# rate/direct above 1 = faster; CPU ratios are against the echo server's CPU per unit
# on the direct path (above 1 = more CPU per MB or per message).
{
    echo "torsion proxy benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs," \
        "${DURATION}s per run; proxy (or direct echo) on CPU $SERVER_CPU, loadgen (and backend) on CPU $LOADGEN_CPU"
    awk -F'\t' -v repeat="$REPEAT" "$AWK_LIB"'
        NR == 1 { next }
        # Collect every run; the table shows, per scenario and path, the median of each
        # figure over the repetitions.
        {
            key = $1 SUBSEP $2
            if (!(key in runs)) { n++; keys[n] = key; scn[n] = $1; path[n] = $2; mode[n] = $3 }
            k = ++runs[key]
            for (f = 4; f <= 11; f++) val[key, f, k] = $f
        }
        # Median of field f of group key over its runs ("na" if no run has a value).
        function median(key, f,    i, list) {
            for (i = 1; i <= runs[key]; i++) list[i] = val[key, f, i]
            return median_of(list, runs[key])
        }
        END {
            if (n == 0) exit
            for (i = 1; i <= n; i++) {
                rate[i] = median(keys[i], 4); p50[i] = median(keys[i], 5); p99[i] = median(keys[i], 6)
                pcpu[i] = median(keys[i], 7); ppct[i] = median(keys[i], 8); ecpu[i] = median(keys[i], 9)
                epct[i] = median(keys[i], 10); lg[i] = median(keys[i], 11)
                if (path[i] == "direct") { d_rate[scn[i]] = rate[i]; d_cpu[scn[i]] = ecpu[i]; d_p50[scn[i]] = p50[i] }
            }
            if (repeat > 1) printf "medians over %d repetitions (each: direct, then proxy; every run in the .tsv)\n", repeat
            fmt = "%-14s %-6s %14s %8s %8s %15s %6s %15s %6s %6s %7s %8s %8s\n"
            printf fmt, "scenario", "path", "throughput", "p50 us", "p99 us", "proxy CPU", "proxy", \
                "echo CPU", "echo", "lg", "rate/", "proxy", "total"
            printf fmt, "", "", "", "", "", "per unit", "CPU %", "per unit", "CPU %", "CPU %", "direct", \
                "cpu/dir", "cpu/dir"
            for (i = 1; i <= n; i++) {
                unit = mode[i] == "stream" ? " MB/s" : " msg/s"
                total = (ok(pcpu[i]) && ok(ecpu[i])) ? pcpu[i] + ecpu[i] : ecpu[i]
                printf fmt, scn[i], path[i], num(rate[i], mode[i] == "stream" ? "%.1f" : "%.0f") unit, \
                    num(p50[i], "%.1f"), num(p99[i], "%.1f"), per(pcpu[i], mode[i]), num(ppct[i], "%.0f"), \
                    per(ecpu[i], mode[i]), num(epct[i], "%.0f"), num(lg[i], "%.0f"), \
                    ratio(rate[i], d_rate[scn[i]]), ratio(pcpu[i], d_cpu[scn[i]]), ratio(total, d_cpu[scn[i]])
                if (path[i] == "proxy" && ok(d_rate[scn[i]]) && ok(rate[i])) {
                    s = mode[i] == "stream" ? \
                        sprintf("%s: %.1f MB/s through the proxy vs %.1f MB/s direct = %s;", scn[i], rate[i], \
                            d_rate[scn[i]], ratio(rate[i], d_rate[scn[i]])) : \
                        sprintf("%s: %.0f msg/s through the proxy vs %.0f direct = %s, p50 %.0f vs %.0f us;", \
                            scn[i], rate[i], d_rate[scn[i]], ratio(rate[i], d_rate[scn[i]]), p50[i], d_p50[scn[i]])
                    if (ok(pcpu[i]))
                        s = s sprintf(" proxy CPU %s = %s the echo server'"'"'s direct (it moves each byte" \
                            " twice, there and back: %s per byte moved); proxy + backend %s of direct", \
                            per(pcpu[i], mode[i]), ratio(pcpu[i], d_cpu[scn[i]]), \
                            ratio(pcpu[i] / 2, d_cpu[scn[i]]), ratio(total, d_cpu[scn[i]]))
                    summary[++m] = s
                }
            }
            if (m > 0) print "\nsummary:"
            for (i = 1; i <= m; i++) print "  " summary[i]
        }' "$TSV"
    if [[ -n $MEMORY_SUMMARY ]]; then
        echo
        echo "$MEMORY_SUMMARY"
    fi
} | tee "$TABLE"
note "results: $TABLE (table), $TSV (raw) and $RSS_TSV (proxy RSS samples)"
