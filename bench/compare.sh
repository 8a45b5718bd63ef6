#!/usr/bin/env bash
# Before/after comparison: torsion's echo server at an earlier commit against the working
# tree's, with raw mio as the yardstick for both.
#
#   bash bench/compare.sh [REV]       # REV defaults to 5bfd11b (before the reactor reshape)
#
# Builds the echo-server of REV in a git worktree (target/bench-before, reused when it
# exists; its own target directory target/bench-before-target), and the working tree's
# echo-server and torsion-bench. Then runs three servers, `raw-mio` (raw-mio-echo),
# `before` (REV's echo-server) and `after` (the working tree's), through every scenario,
# BENCH_REPEAT times, interleaved: each repetition runs each scenario once per server,
# in an order that rotates from one repetition to the next. Every run is measured as in
# run.sh (a fresh server on CPU 0, the load generator on CPU 1, server CPU time from
# /proc/PID/stat). The report gives, per scenario, the median server CPU per message
# (pingpong) or per MB (stream) of each server, before and after as ratios to raw mio's
# median, and after/before. See bench/README.md.
#
# Environment:
#   BENCH_DURATION   seconds of measurement per run (default 5; decimals allowed)
#   BENCH_REPEAT     repetitions (default 3)
#   BENCH_SCENARIOS  scenarios (default: pp64-c100 pp64-c1000 stream64k-c10; any of run.sh's)
#   BENCH_BUILD      set to 0 to skip the cargo builds (the binaries must exist)
#   BENCH_SERVER_CPU / BENCH_LOADGEN_CPU   CPUs to pin to (default 0 and 1)
#   CARGO_TARGET_DIR where the working tree's release binaries are (default: <workspace>/target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

REV=${1:-5bfd11b}
[[ $# -le 1 ]] || { echo "usage: bash bench/compare.sh [REV]" >&2; exit 2; }
DURATION=${BENCH_DURATION:-5}
REPEAT=${BENCH_REPEAT:-3}
BUILD=${BENCH_BUILD:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOADGEN_CPU=${BENCH_LOADGEN_CPU:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RELEASE=$TARGET_DIR/release
LOADGEN=$RELEASE/loadgen
# REV's sources and build.
BEFORE_TREE=$ROOT/target/bench-before
BEFORE_TARGET=$ROOT/target/bench-before-target
# Longest a server may take to print its `listening on` line, in tenths of a second.
STARTUP_TENTHS=100

BENCH_SCRIPT=compare.sh
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"

SCENARIOS=${BENCH_SCENARIOS:-pp64-c100 pp64-c1000 stream64k-c10}
check_names BENCH_SCENARIOS "$ECHO_SCENARIOS" "$SCENARIOS"
check_seconds "$DURATION" BENCH_DURATION
check_repeat "$REPEAT"
LOADGEN_TIMEOUT=$(awk -v d="$DURATION" 'BEGIN { printf "%d", d + 60 }')

COMMIT=$(git rev-parse --verify --quiet "$REV^{commit}") || die "'$REV' is not a commit of this repository"
BEFORE_DESC=$(git log -1 --format='%h %s' "$COMMIT" | cut -c1-80)
AFTER_DESC="working tree at $(git rev-parse --short HEAD)"
[[ -z $(git status --porcelain --untracked-files=no) ]] || AFTER_DESC+=" with uncommitted changes"

# --- Environment -----------------------------------------------------------------

raise_fd_limit 4096
pin_cpus

# --- Sources and builds ----------------------------------------------------------

# Checks out COMMIT in BEFORE_TREE: a new detached worktree, or the existing one moved
# to COMMIT if it is elsewhere.
prepare_before_tree() {
    local head
    if [[ -e $BEFORE_TREE/.git ]]; then
        head=$(git -C "$BEFORE_TREE" rev-parse HEAD) || die "$BEFORE_TREE is not a usable git worktree"
        if [[ $head != "$COMMIT" ]]; then
            note "moving the worktree $BEFORE_TREE to $REV"
            git -C "$BEFORE_TREE" checkout --quiet --detach "$COMMIT" ||
                die "could not check out $REV in $BEFORE_TREE (local changes there?)"
        fi
    else
        [[ ! -e $BEFORE_TREE ]] || die "$BEFORE_TREE exists but is not a git worktree; remove it"
        # A worktree whose directory was deleted is still registered until pruned.
        git worktree prune
        note "creating the worktree $BEFORE_TREE at $REV"
        git worktree add --detach "$BEFORE_TREE" "$COMMIT" >/dev/null || die "git worktree add failed"
    fi
}

if [[ $BUILD != 0 ]]; then
    note "building torsion-bench and the working tree's echo-server (release)"
    cargo build --release -p torsion-bench || die "cargo build -p torsion-bench failed"
    cargo build --release -p torsion-examples --bin echo-server ||
        die "cargo build -p torsion-examples --bin echo-server failed (working tree)"
    prepare_before_tree
    note "building the echo-server of $REV in $BEFORE_TREE (release; target dir $BEFORE_TARGET)"
    (cd "$BEFORE_TREE" && CARGO_TARGET_DIR=$BEFORE_TARGET cargo build --release -p torsion-examples --bin echo-server) ||
        die "cargo build of the echo-server at $REV failed"
fi
if [[ $(git -C "$BEFORE_TREE" rev-parse HEAD 2>/dev/null) != "$COMMIT" ]]; then
    die "$BEFORE_TREE is not at $REV (run without BENCH_BUILD=0 first)"
fi
for bin in "$LOADGEN" "$RELEASE/raw-mio-echo" "$RELEASE/echo-server" "$BEFORE_TARGET/release/echo-server"; do
    [[ -x $bin ]] || die "$bin not found (run without BENCH_BUILD=0)"
done

# --- Run -------------------------------------------------------------------------

setup_work torsion-compare
# Private copies of the two echo servers, so that a rebuild during the run (by someone
# else, in the same target directory) cannot swap a binary between repetitions.
mkdir "$WORK/before" "$WORK/after"
cp "$BEFORE_TARGET/release/echo-server" "$WORK/before/echo-server"
cp "$RELEASE/echo-server" "$WORK/after/echo-server"
SERVER_NAMES=(raw-mio before after)
declare -A SERVER_BIN=([raw-mio]=$RELEASE/raw-mio-echo [before]=$WORK/before/echo-server
    [after]=$WORK/after/echo-server)

STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS_DIR=$ROOT/bench/results
mkdir -p "$RESULTS_DIR"
TSV=$RESULTS_DIR/compare-$STAMP.tsv
TABLE=$RESULTS_DIR/compare-$STAMP.txt
printf 'rep\tserver\tscenario\t%s\n' "$ECHO_ROW_HEADER" >"$TSV"

note "before: $BEFORE_DESC; after: $AFTER_DESC"
note "duration ${DURATION}s per run, $REPEAT repetition(s); scenarios: $SCENARIOS"
for ((rep = 1; rep <= REPEAT; rep++)); do
    for scenario in $SCENARIOS; do
        # Rotate the order, so that no server always runs first (or right after another).
        for ((k = 0; k < ${#SERVER_NAMES[@]}; k++)); do
            server=${SERVER_NAMES[(rep - 1 + k) % ${#SERVER_NAMES[@]}]}
            if run_echo "$server" "$scenario" "${SERVER_BIN[$server]}"; then
                printf '%s\t%s\t%s\t%s\n' "$rep" "$server" "$scenario" "$ECHO_ROW" >>"$TSV"
            else
                note "$server/$scenario #$rep: skipped"
            fi
        done
    done
done

# --- Report ----------------------------------------------------------------------

# Per scenario and server: the median (and range) of the server's CPU per unit and of
# the throughput over the repetitions; ratios are of medians.
{
    echo "torsion before/after, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -sr), $(nproc) CPUs," \
        "${DURATION}s per run, $REPEAT repetition(s), server on CPU $SERVER_CPU, loadgen on CPU $LOADGEN_CPU"
    echo "before: echo-server at $BEFORE_DESC"
    echo "after:  echo-server of the $AFTER_DESC"
    awk -F'\t' -v scenarios="$SCENARIOS" "$AWK_LIB"'
        NR == 1 { next }
        {
            key = $3 SUBSEP $2
            k = ++runs[key]; cpu[key, k] = $8; rate[key, k] = $5; mode[$3] = $4
        }
        # Median, minimum or maximum (what) of the figures in arr over the runs of key.
        function stat(what, arr, key,    i, list) {
            for (i = 1; i <= runs[key]; i++) list[i] = arr[key, i]
            if (what == "min") return min_of(list, runs[key])
            if (what == "max") return max_of(list, runs[key])
            return median_of(list, runs[key])
        }
        function unit(m) { return m == "stream" ? "MB" : "msg" }
        # "median [min-max]" of the CPU per unit, two decimals.
        function spread(key,    m) {
            m = stat("median", cpu, key)
            if (!ok(m)) return "-"
            return sprintf("%.2f [%.2f-%.2f]", m, stat("min", cpu, key), stat("max", cpu, key))
        }
        END {
            n = split(scenarios, scn, " ")
            print "\nserver CPU per unit (us per message for pingpong, per MB for stream): median [min-max] of the runs"
            fmt = "%-18s %-6s %25s %25s %25s %10s %10s %12s\n"
            printf fmt, "scenario", "unit", "raw-mio", "before", "after", "before/raw", "after/raw", "after/before"
            for (i = 1; i <= n; i++) {
                s = scn[i]
                raw = stat("median", cpu, s SUBSEP "raw-mio")
                bef = stat("median", cpu, s SUBSEP "before")
                aft = stat("median", cpu, s SUBSEP "after")
                printf fmt, s, (s in mode) ? "us/" unit(mode[s]) : "-", spread(s SUBSEP "raw-mio"), \
                    spread(s SUBSEP "before"), spread(s SUBSEP "after"), ratio(bef, raw), ratio(aft, raw), \
                    ratio(aft, bef)
            }
            print "\nthroughput (msg/s for pingpong, MB/s for stream): median of the runs"
            fmt = "%-18s %12s %12s %12s %10s %10s %12s\n"
            printf fmt, "scenario", "raw-mio", "before", "after", "before/raw", "after/raw", "after/before"
            for (i = 1; i <= n; i++) {
                s = scn[i]
                f = mode[s] == "stream" ? "%.1f" : "%.0f"
                raw = stat("median", rate, s SUBSEP "raw-mio")
                bef = stat("median", rate, s SUBSEP "before")
                aft = stat("median", rate, s SUBSEP "after")
                printf fmt, s, num(raw, f), num(bef, f), num(aft, f), ratio(bef, raw), ratio(aft, raw), ratio(aft, bef)
            }
            print "\nCPU ratios below 1 are cheaper than the reference; throughput ratios above 1 are faster."
        }' "$TSV"
} | tee "$TABLE"
note "results: $TABLE (table) and $TSV (every run)"
