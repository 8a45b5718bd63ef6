# Shell helpers shared by bench/run.sh and bench/proxy.sh; sourced, not run. The sourcing
# script sets BENCH_SCRIPT (its name, for messages), SERVER_CPU and LOADGEN_CPU first.

die() { echo "$BENCH_SCRIPT: $*" >&2; exit 1; }
note() { echo "$BENCH_SCRIPT: $*" >&2; }

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
