# shellcheck shell=bash
# Shell helpers shared by bench/run.sh, bench/compare.sh and bench/proxy.sh; sourced, not
# run. The sourcing script sets first:
#   BENCH_SCRIPT                its name, for messages;
#   SERVER_CPU, LOADGEN_CPU     the CPUs pin_cpus pins to;
#   STARTUP_TENTHS              longest a server may take to announce itself (start_server);
#   DURATION                    measured seconds per load run (scenario_args);
#   LOADGEN, LOADGEN_TIMEOUT    the load generator binary and the wall-clock bound of one
#                               load run, in seconds (run_loadgen).
# and calls setup_work before starting any process.

die() { echo "$BENCH_SCRIPT: $*" >&2; exit 1; }
note() { echo "$BENCH_SCRIPT: $*" >&2; }

# --- Checking the configuration ----------------------------------------------------

# check_names WHAT KNOWN NAMES: dies unless every word of NAMES is a word of KNOWN
# (WHAT names the variable, for the message).
check_names() {
    local what=$1 known=$2 name
    for name in $3; do
        [[ " $known " == *" $name "* ]] || die "unknown name '$name' in $what (known: $known)"
    done
}

# check_seconds VALUE WHAT: dies unless VALUE is a number of seconds in (0, 600].
check_seconds() {
    [[ $1 =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$2 must be a number of seconds, got '$1'"
    awk -v d="$1" 'BEGIN { exit !(d > 0 && d <= 600) }' || die "$2 must be in (0, 600], got $1"
}

# check_repeat VALUE: dies unless VALUE is a whole number from 1 to 99 (BENCH_REPEAT).
check_repeat() {
    [[ $1 =~ ^[1-9][0-9]?$ ]] || die "BENCH_REPEAT must be a whole number from 1 to 99, got '$1'"
}

# --- Environment -------------------------------------------------------------------

CLK_TCK=$(getconf CLK_TCK)

# Raises this shell's soft descriptor limit to $1 if it is lower (children inherit it);
# notes when the hard limit stops short of it.
raise_fd_limit() {
    local want=$1 soft hard
    soft=$(ulimit -Sn)
    hard=$(ulimit -Hn)
    if [[ $soft != unlimited && $soft -lt $want ]]; then
        if [[ $hard == unlimited || $hard -ge $want ]]; then
            ulimit -Sn "$want"
        else
            ulimit -Sn "$hard"
            note "fd hard limit is $hard (wanted $want); the largest scenarios may fail"
        fi
    fi
}

# Sets PIN_SERVER and PIN_LOADGEN to taskset prefixes pinning to SERVER_CPU and LOADGEN_CPU,
# or to nothing (with a note) when taskset or a second CPU is missing.
pin_cpus() {
    PIN_SERVER=()
    PIN_LOADGEN=()
    if command -v taskset >/dev/null && [[ $(nproc) -ge 2 ]]; then
        PIN_SERVER=(taskset -c "$SERVER_CPU")
        PIN_LOADGEN=(taskset -c "$LOADGEN_CPU")
    else
        note "taskset missing or fewer than 2 CPUs: running unpinned (figures are less comparable)"
    fi
}

# --- Reading /proc and the load generator's output -----------------------------------

# Prints utime + stime of process $1 in clock ticks (fields 14 and 15 of
# /proc/PID/stat; the text after the last ')' starts at field 3).
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    # shellcheck disable=SC2086  # split into fields on purpose
    set -- $stat
    echo $((${12} + ${13}))
}

# Prints field $2 (VmRSS, VmHWM, ...) of /proc/$1/status in KiB, with builtins only (it
# may run ten times a second).
status_kib() {
    local key value _rest
    while read -r key value _rest; do
        if [[ $key == "$2:" ]]; then
            echo "$value"
            return 0
        fi
    done <"/proc/$1/status"
    return 1
}

# Prints the value of key $2 in the `RESULT key=value ...` line $1 (`na` if absent).
result_field() {
    local field
    for field in $1; do
        if [[ $field == "$2="* ]]; then
            echo "${field#*=}"
            return
        fi
    done
    echo na
}

# Prints the throughput of the RESULT line $1: MB/s for a stream run, messages/s otherwise.
result_rate() {
    if [[ $(result_field "$1" mode) == stream ]]; then
        result_field "$1" mb_per_s
    else
        result_field "$1" msgs_per_s
    fi
}

# Prints CPU time per unit of work: microseconds per message (pingpong) or per
# megabyte (stream), from $1 clock ticks and the RESULT line $2; then the CPU use in
# percent of the wall time $3 (seconds).
cpu_per_unit() {
    awk -v ticks="$1" -v hz="$CLK_TCK" -v wall="$3" -v mode="$(result_field "$2" mode)" \
        -v msgs="$(result_field "$2" messages)" -v bytes="$(result_field "$2" bytes)" '
        BEGIN {
            cpu_s = ticks / hz
            units = mode == "pingpong" ? msgs : bytes / 1e6
            printf "%s %.1f\n", (units > 0 ? sprintf("%.3f", cpu_s * 1e6 / units) : "na"), 100 * cpu_s / wall
        }'
}

# awk functions for the reports; put in front of an awk program ("$AWK_LIB"' ... ').
#   ok(v)           v is a figure (not empty, not "na")
#   num(v, fmt)     v formatted, or "-"
#   per(v, mode)    CPU per unit: "1.23 us/msg", "456.78 us/MB" (mode "stream"), or "-"
#   ratio(a, b)     a / b as "1.23x", or "-"
#   median_of(list, c), min_of(list, c), max_of(list, c)
#   median_words(text)  median of the space-separated figures in text; "na" if none
#                   over the figures among list[1..c]; "na" if there are none
# shellcheck disable=SC2016,SC2034  # awk code, not shell; used by the sourcing scripts
AWK_LIB='
function ok(v) { return v != "" && v != "na" }
function num(v, fmt) { return ok(v) ? sprintf(fmt, v) : "-" }
function per(v, mode) { return ok(v) ? sprintf("%.2f us/%s", v, mode == "stream" ? "MB" : "msg") : "-" }
function ratio(a, b) { return (ok(a) && ok(b) && b + 0 > 0) ? sprintf("%.2fx", a / b) : "-" }
function sorted_figures(list, c, out,    i, j, k, v) {
    k = 0
    for (i = 1; i <= c; i++) {
        v = list[i]
        if (!ok(v)) continue
        v += 0
        for (j = ++k; j > 1 && out[j - 1] > v; j--) out[j] = out[j - 1]
        out[j] = v
    }
    return k
}
function median_words(text,    list, c) { c = split(text, list, " "); return median_of(list, c) }
function median_of(list, c,    k, s) {
    k = sorted_figures(list, c, s)
    if (k == 0) return "na"
    return k % 2 ? s[(k + 1) / 2] : (s[k / 2] + s[k / 2 + 1]) / 2
}
function min_of(list, c,    k, s) { k = sorted_figures(list, c, s); return k ? s[1] : "na" }
function max_of(list, c,    k, s) { k = sorted_figures(list, c, s); return k ? s[k] : "na" }
'

# --- Processes ---------------------------------------------------------------------

# PIDs of the processes this script started and has not yet stopped; only these are
# ever signalled.
PIDS=()

# Stops process $1 (one this script started): SIGTERM, then SIGKILL after 2 s.
stop_pid() {
    local pid=$1 kept=() p
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 20); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
}

# Stops every process still running that this script started, newest first.
stop_all() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[i]}"
    done
}

# setup_work PREFIX: creates the scratch directory WORK (server output, Unix sockets)
# and arranges for it to be removed, and every started process stopped, on exit.
setup_work() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    SOCKET_SEQ=0
    trap '_cleanup' EXIT
    trap 'exit 130' INT TERM
}

_cleanup() {
    stop_all
    rm -rf "$WORK"
}

# listen_addr TRANSPORT: sets LISTEN_ADDR to a server's --listen argument: a
# kernel-chosen loopback port (tcp), or a fresh socket path in WORK (unix).
listen_addr() {
    case $1 in
        tcp | udp) LISTEN_ADDR=127.0.0.1:0 ;;
        unix)
            SOCKET_SEQ=$((SOCKET_SEQ + 1))
            LISTEN_ADDR=unix:$WORK/$SOCKET_SEQ.sock
            # sockaddr_un holds 107 bytes of path.
            ((${#LISTEN_ADDR} - 5 <= 107)) ||
                die "Unix socket path $WORK/$SOCKET_SEQ.sock is too long: set TMPDIR to a shorter directory"
            ;;
        *) die "unknown transport '$1'" ;;
    esac
}

# start_server NAME WHERE LISTEN PROGRAM ARGS...: starts `PROGRAM ARGS... --listen LISTEN`
# pinned to the server CPU (WHERE=server) or the load generator's (WHERE=loadgen), and
# waits for its `listening on <addr>` line. Sets STARTED_PID and STARTED_ADDR.
start_server() {
    local name=$1 where=$2 listen=$3 out=$WORK/$1.out err=$WORK/$1.err line pin
    shift 3
    if [[ $where == server ]]; then pin=("${PIN_SERVER[@]}"); else pin=("${PIN_LOADGEN[@]}"); fi
    : >"$out"
    # taskset execs the program, so $! is the program's own PID.
    "${pin[@]}" "$@" --listen "$listen" >"$out" 2>"$err" &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
    for _ in $(seq "$STARTUP_TENTHS"); do
        # `read` succeeds only once a complete first line is there.
        if IFS= read -r line <"$out"; then
            if [[ $line == "listening on "* ]]; then
                STARTED_ADDR=${line#listening on }
                return 0
            fi
            note "$name: unexpected first line '$line' (want 'listening on <addr>')"
            stop_pid "$STARTED_PID"
            return 1
        fi
        if ! kill -0 "$STARTED_PID" 2>/dev/null; then
            note "$name exited during startup: $(tail -n 3 "$err")"
            stop_pid "$STARTED_PID"
            return 1
        fi
        sleep 0.1
    done
    note "$name did not print 'listening on <addr>' in time"
    stop_pid "$STARTED_PID"
    return 1
}

# --- Scenarios and load runs -------------------------------------------------------

# The echo scenarios (run.sh, compare.sh; proxy.sh runs two of them).
ECHO_SCENARIOS="pp64-c100 pp64-c1000 stream64k-c10 unix-pp64-c100 unix-stream64k-c10"

# scenario_args NAME: sets SCENARIO_ARGS to the load generator arguments of scenario
# NAME (all but --addr) and SCENARIO_TRANSPORT to the server's transport (tcp or unix).
scenario_args() {
    SCENARIO_TRANSPORT=tcp
    case $1 in
        pp64-c100) SCENARIO_ARGS=(pingpong --conns 100 --size 64 --duration "$DURATION") ;;
        pp64-c1000) SCENARIO_ARGS=(pingpong --conns 1000 --size 64 --duration "$DURATION") ;;
        stream64k-c10) SCENARIO_ARGS=(stream --conns 10 --size 65536 --duration "$DURATION") ;;
        unix-pp64-c100)
            SCENARIO_ARGS=(pingpong --conns 100 --size 64 --duration "$DURATION")
            SCENARIO_TRANSPORT=unix
            ;;
        unix-stream64k-c10)
            SCENARIO_ARGS=(stream --conns 10 --size 65536 --duration "$DURATION")
            SCENARIO_TRANSPORT=unix
            ;;
        udp-pp64)
            SCENARIO_ARGS=(udp-pingpong --conns 100 --size 64 --duration "$DURATION")
            SCENARIO_TRANSPORT=udp
            ;;
        *) die "unknown scenario '$1' (known: $ECHO_SCENARIOS)" ;;
    esac
}

# run_loadgen LABEL ADDR: runs the load generator with SCENARIO_ARGS against ADDR, pinned
# to the load generator CPU and bounded by LOADGEN_TIMEOUT. Sets LG_RESULT (its RESULT
# line) and LG_HUMAN (its line for people); returns 1, with a note, if it fails.
run_loadgen() {
    local out
    if ! out=$(timeout "$LOADGEN_TIMEOUT" "${PIN_LOADGEN[@]}" "$LOADGEN" "${SCENARIO_ARGS[@]}" \
        --addr "$2" 2>"$WORK/loadgen.err"); then
        note "$1: load generator failed: $(tail -n 3 "$WORK/loadgen.err")"
        return 1
    fi
    LG_RESULT=$(grep '^RESULT ' <<<"$out" || true)
    LG_HUMAN=$(grep -v '^RESULT ' <<<"$out" || true)
    [[ -n $LG_RESULT ]] || { note "$1: no RESULT line from the load generator"; return 1; }
}

# The columns of ECHO_ROW, tab-separated (for the scripts' .tsv headers).
# shellcheck disable=SC2034  # used by the sourcing scripts
ECHO_ROW_HEADER=$'mode\trate\tp50_us\tp99_us\tcpu_us_per_unit\tserver_cpu_pct\trss_kib\tloadgen_cpu_pct'

# run_echo NAME SCENARIO PROGRAM ARGS...: measures one echo server in one scenario.
# Starts `PROGRAM ARGS... --listen ADDR` (ADDR: a loopback port, or a fresh Unix socket
# path for unix-* scenarios) pinned to the server CPU, runs the load generator through
# SCENARIO against the address it announces, samples the server's CPU time (utime +
# stime) around that run and its peak RSS (VmHWM) after it, and stops it. Prints the
# load generator's line for people, and sets ECHO_ROW to the figures in the columns of
# ECHO_ROW_HEADER. Returns 1, with a note, if the server or the load generator fails.
run_echo() {
    local name=$1 scenario=$2 pid cpu_before cpu_after t_before t_after rss unit pct
    shift 2
    scenario_args "$scenario"
    listen_addr "$SCENARIO_TRANSPORT"
    start_server "$name" server "$LISTEN_ADDR" "$@" || return 1
    pid=$STARTED_PID
    cpu_before=$(cpu_ticks "$pid")
    t_before=$(date +%s.%N)
    if ! run_loadgen "$name/$scenario" "$STARTED_ADDR"; then
        stop_pid "$pid"
        return 1
    fi
    t_after=$(date +%s.%N)
    if ! kill -0 "$pid" 2>/dev/null; then
        note "$name/$scenario: server died during the run"
        stop_pid "$pid"
        return 1
    fi
    cpu_after=$(cpu_ticks "$pid")
    rss=$(status_kib "$pid" VmHWM)
    stop_pid "$pid"
    # A server killed by SIGKILL leaves its socket file behind.
    [[ $SCENARIO_TRANSPORT != unix ]] || rm -f "${LISTEN_ADDR#unix:}"

    echo "  $name/$scenario: $LG_HUMAN"
    read -r unit pct < <(cpu_per_unit $((cpu_after - cpu_before)) "$LG_RESULT" \
        "$(awk -v a="$t_before" -v b="$t_after" 'BEGIN { print b - a }')")
    # shellcheck disable=SC2034  # read by the caller
    ECHO_ROW=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$(result_field "$LG_RESULT" mode)" \
        "$(result_rate "$LG_RESULT")" "$(result_field "$LG_RESULT" p50_us)" \
        "$(result_field "$LG_RESULT" p99_us)" "$unit" "$pct" "$rss" \
        "$(result_field "$LG_RESULT" client_cpu_pct)")
}
