#!/usr/bin/env bash
# Reliability catalogue test 11, second half: echo-server under a bounded load, run under
# valgrind's leak checker, must report "definitely lost: 0" (as tokio's CI does with
# `valgrind --leak-check=full` on a bounded echo stress example).
#
# The load: 100 connections on 127.0.0.1, each echoing random messages for about 3 s and then
# half-closing and reading the rest to EOF (every byte checked). Then SIGINT: the server stops
# gracefully and exits, and valgrind writes its leak summary.
#
# Skipped (exit 0, with a message) only where valgrind is not installed. Usage:
#   scripts/valgrind.sh            # builds echo-server (debug) first
# Environment: ECHO_SERVER=path to use a prebuilt binary instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v valgrind >/dev/null 2>&1; then
    echo "SKIPPED: valgrind is not installed; the echo-server leak check did not run"
    exit 0
fi
if [ -z "${ECHO_SERVER:-}" ]; then
    cargo build -q -p torsion-examples --bin echo-server
    ECHO_SERVER="$PWD/target/debug/echo-server"
fi

work="$(mktemp -d)"
touch "$work/stdout" "$work/stderr"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

valgrind --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite \
    --log-file="$work/valgrind.log" "$ECHO_SERVER" --listen 127.0.0.1:0 >"$work/stdout" 2>"$work/stderr" &
server_pid=$!

# valgrind starts slowly: wait (bounded) for the "listening on <addr>" line.
addr=""
for _ in $(seq 1 600); do
    addr="$(sed -n 's/^listening on //p' "$work/stdout" | head -n1)"
    [ -n "$addr" ] && break
    kill -0 "$server_pid" 2>/dev/null || { echo "echo-server exited early"; cat "$work/stderr" "$work/valgrind.log"; exit 1; }
    sleep 0.1
done
[ -n "$addr" ] || { echo "echo-server under valgrind did not start within 60 s"; exit 1; }
echo "echo-server under valgrind listening on $addr"

python3 - "$addr" <<'PY'
import random, selectors, socket, sys, time

host, port = sys.argv[1].rsplit(":", 1)
CONNS, SECONDS = 100, 3.0
sel = selectors.DefaultSelector()
state = {}
for i in range(CONNS):
    s = socket.create_connection((host, int(port)), timeout=30)
    s.setblocking(False)
    state[s] = {"sent": bytearray(), "got": bytearray(), "out": b"", "closed": False, "rng": random.Random(i)}
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
deadline = time.monotonic() + SECONDS
hard_deadline = time.monotonic() + 60
open_conns = CONNS
while open_conns:
    if time.monotonic() > hard_deadline:
        sys.exit("load client: echoes did not finish within 60 s")
    for key, events in sel.select(timeout=1):
        s, st = key.fileobj, state[key.fileobj]
        if events & selectors.EVENT_READ:
            try:
                data = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            if data == b"":
                if st["got"] != st["sent"]:
                    sys.exit("load client: echo differs (%d sent, %d back)" % (len(st["sent"]), len(st["got"])))
                sel.unregister(s); s.close(); open_conns -= 1
                continue
            if data:
                st["got"] += data
        if events & selectors.EVENT_WRITE and not st["closed"]:
            if not st["out"]:
                if time.monotonic() >= deadline:
                    s.shutdown(socket.SHUT_WR); st["closed"] = True
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                if len(st["got"]) + 65536 < len(st["sent"]):
                    continue  # let the echo catch up
                st["out"] = bytes(st["rng"].getrandbits(8) for _ in range(st["rng"].randint(1, 2048)))
            try:
                n = s.send(st["out"])
            except (BlockingIOError, InterruptedError):
                n = 0
            st["sent"] += st["out"][:n]; st["out"] = st["out"][n:]
total = sum(len(st["sent"]) for st in state.values())
print("load client: %d connections echoed %d bytes, all byte-exact" % (CONNS, total))
PY

kill -INT "$server_pid"
for _ in $(seq 1 600); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then echo "echo-server did not exit within 60 s of SIGINT"; exit 1; fi
status=0
wait "$server_pid" || status=$?
server_pid=""

grep -E "LEAK SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|All heap blocks|ERROR SUMMARY" \
    "$work/valgrind.log" | sed 's/^==[0-9]*== */    /'
if [ "$status" -ne 0 ]; then
    echo "FAILED: echo-server exited with status $status under valgrind"
    cat "$work/valgrind.log"
    exit 1
fi
if grep -q "All heap blocks were freed" "$work/valgrind.log" ||
    grep -Eq "definitely lost: 0 bytes in 0 blocks" "$work/valgrind.log"; then
    echo "valgrind: definitely lost: 0 (echo-server, 100 connections, ~3 s of echo load)"
else
    echo "FAILED: valgrind reports definitely lost memory"
    cat "$work/valgrind.log"
    exit 1
fi
