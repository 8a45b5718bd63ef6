#!/usr/bin/env python3
"""Twisted's own DatagramProtocol as a client of a UDP echo server (torsion's udp-echo).

    twisted_udp_client.py --port PORT [--count N] [--seed S] [--deadline SECS]

Connects its UDP port to 127.0.0.1:PORT (connected mode, as `transport.connect`), then sends
COUNT datagrams of seeded random sizes from 0 to 8192 bytes one at a time, each after the echo
of the previous one, and checks every echo byte-exact. A lost datagram is re-sent after 1 s (at
most 3 times). Prints `ok COUNT` and exits 0, or prints what went wrong and exits 1.
"""

import argparse
import random
import sys

from twisted.internet import protocol, reactor

RETRY_SECS = 1.0
MAX_RETRIES = 3


class Client(protocol.DatagramProtocol):
    def __init__(self, port, count, seed):
        self.port = port
        self.count = count
        self.rng = random.Random(seed)
        self.sent = 0
        self.current = None
        self.retries = 0
        self.retry_call = None
        self.failure = None

    def startProtocol(self):
        self.transport.connect("127.0.0.1", self.port)
        self.send_next()

    def send_next(self):
        if self.sent == self.count:
            print("ok %d" % self.count, flush=True)
            reactor.stop()
            return
        size = self.rng.randrange(0, 8193)
        self.current = bytes(self.rng.getrandbits(8) for _ in range(size))
        self.sent += 1
        self.retries = 0
        self.send_current()

    def send_current(self):
        self.transport.write(self.current)
        self.retry_call = reactor.callLater(RETRY_SECS, self.retry)

    def retry(self):
        self.retries += 1
        if self.retries > MAX_RETRIES:
            self.fail("no echo for datagram %d after %d retries" % (self.sent, MAX_RETRIES))
            return
        self.send_current()

    def datagramReceived(self, data, addr):
        if self.retry_call is not None and self.retry_call.active():
            self.retry_call.cancel()
        if data != self.current:
            self.fail("datagram %d: echo of %d bytes differs from the %d sent"
                      % (self.sent, len(data), len(self.current)))
            return
        self.send_next()

    def connectionRefused(self):
        self.fail("connection refused (ICMP port unreachable): is the server up?")

    def fail(self, why):
        if self.failure is None:
            self.failure = why
            print("FAILED: " + why, flush=True)
            if reactor.running:
                reactor.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=868)
    parser.add_argument("--deadline", type=float, default=15.0)
    args = parser.parse_args()
    client = Client(args.port, args.count, args.seed)
    reactor.listenUDP(0, client, interface="127.0.0.1")
    reactor.callLater(args.deadline, client.fail, "deadline of %ss passed" % args.deadline)
    reactor.run()
    sys.exit(1 if client.failure else 0)


if __name__ == "__main__":
    main()
