#!/usr/bin/env python3
"""Twisted echo server for the torsion benchmark.

A ``twisted.internet.protocol.Protocol`` whose ``dataReceived`` writes the data
straight back with ``self.transport.write(data)``: Twisted's own echo example, on the
default reactor (epoll on Linux). Accepted connections get ``TCP_NODELAY``.

Usage: ``python3 bench/twisted_echo.py [--listen 127.0.0.1:0]``. The first line on
standard output is ``listening on <addr>``. SIGTERM stops the reactor.
"""

import argparse
import sys

from twisted.internet import protocol, reactor


class Echo(protocol.Protocol):
    """Echoes every received chunk back on the same connection."""

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)

    def dataReceived(self, data):
        self.transport.write(data)


class EchoFactory(protocol.Factory):
    protocol = Echo
    # No "Starting factory" lines on the log (there is no log observer anyway).
    noisy = False


def parse_addr(text):
    """Splits ``host:port`` or ``[v6host]:port`` into ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=parse_addr, default=("127.0.0.1", 0),
                        help="address to listen on, HOST:PORT (port 0: kernel chooses)")
    host, port = parser.parse_args().listen
    # Backlog 1024 like the other servers (Twisted's default is 50).
    listening = reactor.listenTCP(port, EchoFactory(), backlog=1024, interface=host)
    addr = listening.getHost()
    shown = f"[{addr.host}]" if ":" in addr.host else addr.host
    print(f"listening on {shown}:{addr.port}", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
