#!/usr/bin/env python3
"""Drives a framing echo server with Twisted's own receivers as clients, byte-exact.

    twisted_frames.py --port PORT --framing line|int8|int16|int32|netstring
                      [--max-length N] [--seed S] [--frames K] [--timeout SECONDS]

The server on 127.0.0.1:PORT (torsion's frame-echo, or twisted_echo_server.py as the yardstick)
must echo each frame back in the same framing, enforce --max-length (the server's limit; the
defaults are Twisted's: 16384 for lines, 99999 otherwise) and close the connection on a
too-long or malformed frame.

The clients are Twisted's LineReceiver (delimiter \\r\\n), Int8/Int16/Int32StringReceiver and
NetstringReceiver, with MAX_LENGTH set to the server's limit, so every frame is encoded and
decoded by Twisted itself. Checks, in order:

  echo       several connections at once, each pipelining K frames of seeded random sizes from
             0 to the largest the server accepts (0 and exactly-max always among them) in one
             burst; every echo byte-exact and in order.
  ping-pong  frames one at a time, each awaited before the next is sent.
  too-long   a frame of max+1 (where the prefix can express it): the server echoes the frame
             before it, then closes the connection without echoing it or the frame after it.
  too-long   the header alone (an unterminated line of max+2 bytes; a prefix announcing max+1
  header     with no body): the server closes without waiting for more.
  malformed  (netstring) missing comma, non-digit / empty / zero-padded length: close, no echo.

Everything is bounded by one reactor.callLater deadline. Exit status: 0 when every check
passed, 1 on a mismatch or a wrong close (with a message naming the check), 3 on the deadline.
Reproducible: the same --seed gives the same frames.
"""

import argparse
import random
import struct
import sys

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols import basic

HOST = "127.0.0.1"
DEFAULT_MAX = {"line": 16384, "int8": 99999, "int16": 99999, "int32": 99999, "netstring": 99999}
PREFIX_BYTES = {"int8": 1, "int16": 2, "int32": 4}


class CheckFailed(Exception):
    """A check saw the server misbehave; the message says how."""


class Collector:
    """Mixin for a Twisted receiver: records each decoded frame and how the connection ended."""

    def connectionMade(self):
        self.frames = []
        self.client_errors = []
        self.lost = defer.Deferred()
        self.lost_reason = None
        self._waiting = None  # (frame count, Deferred)

    def got(self, frame):
        self.frames.append(frame)
        if self._waiting is not None and len(self.frames) >= self._waiting[0]:
            _, d = self._waiting
            self._waiting = None
            d.callback(None)

    def wait_frames(self, count):
        """A Deferred that fires once `count` frames in all have arrived on this connection."""
        if len(self.frames) >= count:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting = (count, d)
        return d

    def client_error(self, what):
        # Twisted's receiver rejected what the server sent: record it, the check reports it.
        self.client_errors.append(what)
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.lost_reason = reason
        if self._waiting is not None:
            count, d = self._waiting
            self._waiting = None
            errors = f"; the Twisted client rejected: {self.client_errors}" if self.client_errors else ""
            d.errback(
                CheckFailed(
                    f"the connection closed ({reason.getErrorMessage()}) after {len(self.frames)} "
                    f"of {count} echoes{errors}"
                )
            )
        # Not callback(reason): a Failure passed to callback() would fire the errback chain.
        self.lost.callback(None)


class LineClient(Collector, basic.LineReceiver):
    delimiter = b"\r\n"

    def lineReceived(self, line):
        self.got(line)

    def lineLengthExceeded(self, line):
        self.client_error(f"an echoed line longer than MAX_LENGTH {self.MAX_LENGTH}")

    def send(self, frame):
        self.sendLine(frame)


class StringClient(Collector):
    def stringReceived(self, string):
        self.got(string)

    def send(self, frame):
        self.sendString(frame)


class IntNClient(StringClient):
    def lengthLimitExceeded(self, length):
        self.client_error(f"an echoed prefix of {length} > MAX_LENGTH {self.MAX_LENGTH}")


class Int8Client(IntNClient, basic.Int8StringReceiver):
    pass


class Int16Client(IntNClient, basic.Int16StringReceiver):
    pass


class Int32Client(IntNClient, basic.Int32StringReceiver):
    pass


class NetstringClient(StringClient, basic.NetstringReceiver):
    def _handleParseError(self):
        self.client_errors.append("a malformed netstring from the server")
        super()._handleParseError()


CLIENTS = {
    "line": LineClient,
    "int8": Int8Client,
    "int16": Int16Client,
    "int32": Int32Client,
    "netstring": NetstringClient,
}


class Run:
    """One run against one server: the frames, the connections, the steps and their report."""

    def __init__(self, args):
        self.framing = args.framing
        self.port = args.port
        self.max_length = args.max_length if args.max_length is not None else DEFAULT_MAX[args.framing]
        prefix = PREFIX_BYTES.get(self.framing)
        # The largest frame the server can be sent: its limit, or what the prefix can express.
        self.largest = min(self.max_length, 2 ** (8 * prefix) - 1) if prefix else self.max_length
        # Can a frame of max+1 be written at all? Not through an int8 prefix when the limit is 99999.
        self.over_expressible = prefix is None or self.max_length + 1 <= 2 ** (8 * prefix) - 1
        self.rng = random.Random(f"{args.seed}/{self.framing}/{self.max_length}")
        self.frames_per_conn = args.frames
        self.connections = args.connections
        self.step = "starting"
        self.finished = False
        self.lines = []
        self.client_class = type(
            CLIENTS[self.framing].__name__, (CLIENTS[self.framing],), {"MAX_LENGTH": self.max_length}
        )

    def say(self, line):
        # After the verdict (say the deadline), closing connections may wake checks up: stay quiet.
        if not self.finished:
            print(line, flush=True)

    # -- frames --------------------------------------------------------------------------------

    def payload(self, size):
        data = self.rng.randbytes(size)
        if self.framing == "line":
            # Lone \r and \n stay (Twisted's LineReceiver splits on \r\n only); \r\n cannot.
            # Replacing \n keeps the length and cannot create a new \r\n.
            data = data.replace(b"\r\n", b"\r\x0b")
        return data

    def frame_set(self, count):
        """`count` frames: 0 and the largest always, the rest half small, half anywhere up to max."""
        sizes = [0, self.largest]
        while len(sizes) < count:
            if self.rng.random() < 0.5:
                sizes.append(self.rng.randint(0, min(300, self.largest)))
            else:
                sizes.append(self.rng.randint(0, self.largest))
        self.rng.shuffle(sizes)
        frames = [self.payload(n) for n in sizes]
        if self.framing == "line" and count >= 4 and self.largest >= 2:
            # Edge cases for a delimiter scanner: a line ending in \r, one starting with \n.
            frames[1] = frames[1][:-1] + b"\r" if frames[1] else b"\r"
            frames[2] = b"\n" + frames[2][1:] if frames[2] else b"\n"
        return frames

    # -- connections ---------------------------------------------------------------------------

    @defer.inlineCallbacks
    def connect(self):
        endpoint = TCP4ClientEndpoint(reactor, HOST, self.port, timeout=10)
        proto = yield connectProtocol(endpoint, self.client_class())
        return proto

    def compare(self, what, sent, got):
        if len(got) != len(sent) or any(a != b for a, b in zip(sent, got)):
            for i, (a, b) in enumerate(zip(sent, got)):
                if a != b:
                    at = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                    raise CheckFailed(
                        f"{what}: frame {i} differs: sent {len(a)} bytes, got back {len(b)} bytes, "
                        f"first difference at offset {at} (sent {a[at:at + 8]!r}, got {b[at:at + 8]!r})"
                    )
            raise CheckFailed(f"{what}: sent {len(sent)} frames, got back {len(got)}")

    # -- checks --------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def check_echo(self):
        self.step = f"echo: {self.connections} connections x {self.frames_per_conn} pipelined frames"
        conns = []
        for _ in range(self.connections):
            conns.append((yield self.connect()))
        sets = [self.frame_set(self.frames_per_conn) for _ in conns]
        # Every connection bursts all its frames before any echo is awaited: the server sees many
        # frames per read and frames split across reads, on several connections at once.
        for proto, frames in zip(conns, sets):
            for frame in frames:
                proto.send(frame)
        yield defer.gatherResults([p.wait_frames(len(f)) for p, f in zip(conns, sets)], consumeErrors=True)
        total = 0
        for n, (proto, frames) in enumerate(zip(conns, sets)):
            self.compare(f"echo, connection {n}", frames, proto.frames)
            total += sum(len(f) for f in frames)
        self.say(
            f"  ok   echo: {len(conns)} connections x {self.frames_per_conn} pipelined frames of 0..{self.largest} "
            f"bytes ({total} payload bytes), byte-exact and in order"
        )

        self.step = "ping-pong: one frame at a time"
        proto = conns[0]
        pingpong = self.frame_set(10)
        base = len(proto.frames)
        for i, frame in enumerate(pingpong):
            proto.send(frame)
            yield proto.wait_frames(base + i + 1)
        self.compare("ping-pong", pingpong, proto.frames[base:])
        self.say(f"  ok   ping-pong: {len(pingpong)} frames, each awaited before the next, byte-exact")

        self.step = "echo: closing the connections cleanly"
        for p in conns:
            p.transport.loseConnection()
        yield defer.gatherResults([p.lost for p in conns], consumeErrors=True)
        for n, (p, frames) in enumerate(zip(conns, sets)):
            # Connection 0 also carried the ping-pong frames.
            expected = len(frames) + (len(pingpong) if n == 0 else 0)
            extra = len(p.frames) - expected
            if extra:
                raise CheckFailed(f"echo: connection {n} got {extra} unexpected frames after the last echo")
            if p.client_errors:
                raise CheckFailed(f"echo: connection {n}: the Twisted client rejected {p.client_errors}")

    @defer.inlineCallbacks
    def expect_close(self, name, raw=None, frame=None, trailing=True):
        """Echo one good frame, then send the bad input: the server must close and echo nothing more."""
        self.step = name
        proto = yield self.connect()
        good = self.payload(min(16, self.largest))
        proto.send(good)
        yield proto.wait_frames(1)
        self.compare(f"{name}: the frame before", [good], proto.frames)
        if frame is not None:
            proto.send(frame)
        else:
            proto.transport.write(raw)
        if trailing:
            # A good frame after the bad one: it must not be echoed either.
            proto.send(good)
        yield proto.lost
        reason = proto.lost_reason
        if proto.client_errors:
            # The close was ours: the server sent something Twisted's own receiver refuses, such as
            # the echo of the too-long frame.
            raise CheckFailed(
                f"{name}: the server did not close the connection; it sent what the Twisted client "
                f"rejects: {proto.client_errors}"
            )
        if len(proto.frames) != 1:
            raise CheckFailed(
                f"{name}: the server echoed {len(proto.frames) - 1} frame(s) after the bad input "
                f"instead of closing the connection"
            )
        self.say(f"  ok   {name}: closed ({reason.type.__name__}), no echo after the bad input")

    @defer.inlineCallbacks
    def check_limits(self):
        over = self.max_length + 1
        prefix = PREFIX_BYTES.get(self.framing)
        if not self.over_expressible:
            self.say(
                f"  skip too-long: a frame of max+1 = {over} bytes cannot be expressed by an "
                f"{self.framing} prefix (run with --max-length below {2 ** (8 * prefix) - 1})"
            )
            return
        yield self.expect_close(f"too-long: a frame of max+1 = {over} bytes", frame=self.payload(over))
        if self.framing == "line":
            # max+2 bytes, no \r anywhere, no delimiter: too long whatever comes next.
            body = self.payload(over + 1).replace(b"\r", b"\x0c")
            yield self.expect_close(
                f"too-long header: {over + 1} bytes with no delimiter", raw=body, trailing=False
            )
        elif self.framing == "netstring":
            yield self.expect_close(
                f"too-long header: the length {over} and ':' alone", raw=b"%d:" % over, trailing=False
            )
        else:
            fmt = {"int8": "!B", "int16": "!H", "int32": "!I"}[self.framing]
            yield self.expect_close(
                f"too-long header: a prefix of {over} with no body", raw=struct.pack(fmt, over), trailing=False
            )

    @defer.inlineCallbacks
    def check_malformed(self):
        if self.framing != "netstring":
            return
        cases = [
            ("malformed: missing comma (3:abcX)", b"3:abcX"),
            ("malformed: non-digit length (x3:abc,)", b"x3:abc,"),
            ("malformed: empty length (:abc,)", b":abc,"),
            ("malformed: zero-padded length (03:abc,)", b"03:abc,"),
        ]
        for name, raw in cases:
            yield self.expect_close(name, raw=raw)

    def twisted_receiver(self):
        return next(c.__name__ for c in self.client_class.__mro__ if c.__module__ == basic.__name__)

    @defer.inlineCallbacks
    def run(self):
        self.say(
            f"twisted-interop: framing={self.framing} max-length={self.max_length} "
            f"largest-frame={self.largest} port={self.port} (client: Twisted's {self.twisted_receiver()})"
        )
        yield self.check_echo()
        yield self.check_limits()
        yield self.check_malformed()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="the echo server's port on 127.0.0.1")
    parser.add_argument("--framing", required=True, choices=sorted(CLIENTS))
    parser.add_argument("--max-length", type=int, default=None, help="the server's limit (default: Twisted's)")
    parser.add_argument("--seed", default="4", help="seed for the frame sizes and bytes")
    parser.add_argument("--frames", type=int, default=40, help="frames per connection in the echo check")
    parser.add_argument("--connections", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline for the whole run, seconds")
    args = parser.parse_args(argv)
    if args.frames < 4:
        parser.error("--frames must be at least 4")

    run = Run(args)
    outcome = {"status": None}

    def finish(status, message):
        if outcome["status"] is None:
            outcome["status"] = status
            run.finished = True
            if message:
                print(message, file=sys.stderr, flush=True)
            if reactor.running:
                reactor.stop()

    def deadline():
        finish(3, f"FAIL ({run.framing}): TIMEOUT after {args.timeout}s in step: {run.step}")

    def done(_):
        if outcome["status"] is None:
            print(f"PASS ({run.framing}): every check passed", flush=True)
        finish(0, None)

    def failed(failure):
        err = failure.value
        if isinstance(err, defer.FirstError):
            err = err.subFailure.value
        finish(1, f"FAIL ({run.framing}) in step: {run.step}: {type(err).__name__}: {err}")

    timer = reactor.callLater(args.timeout, deadline)

    def start():
        d = run.run()
        d.addCallbacks(done, failed)
        d.addBoth(lambda _: timer.cancel() if timer.active() else None)

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    return 1 if outcome["status"] is None else outcome["status"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
