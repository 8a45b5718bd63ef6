#!/usr/bin/env python3
"""The reference: Twisted's own framers as an echo server, with frame-echo's CLI.

    twisted_echo_server.py --listen 127.0.0.1:0 --framing line|int8|int16|int32|netstring
                           [--max-length N]

Prints `listening on <addr>` as the first stdout line, echoes each received frame in the same
framing, closes the connection on a too-long or malformed frame (Twisted's own default
behaviour), and exits 0 on SIGINT. It is the yardstick for twisted_frames.py: the client script
must pass against this server, so a failure against torsion's frame-echo is frame-echo's.
"""

import argparse
import sys

from twisted.internet import protocol, reactor
from twisted.protocols import basic

DEFAULT_MAX = {"line": 16384, "int8": 99999, "int16": 99999, "int32": 99999, "netstring": 99999}


class LineEcho(basic.LineReceiver):
    def lineReceived(self, line):
        self.sendLine(line)


class StringEcho:
    def stringReceived(self, string):
        self.sendString(string)


class Int8Echo(StringEcho, basic.Int8StringReceiver):
    pass


class Int16Echo(StringEcho, basic.Int16StringReceiver):
    pass


class Int32Echo(StringEcho, basic.Int32StringReceiver):
    pass


class NetstringEcho(StringEcho, basic.NetstringReceiver):
    pass


PROTOCOLS = {
    "line": LineEcho,
    "int8": Int8Echo,
    "int16": Int16Echo,
    "int32": Int32Echo,
    "netstring": NetstringEcho,
}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 picks one)")
    parser.add_argument("--framing", required=True, choices=sorted(PROTOCOLS))
    parser.add_argument("--max-length", type=int, default=None)
    args = parser.parse_args(argv)

    host, _, port = args.listen.rpartition(":")
    max_length = args.max_length if args.max_length is not None else DEFAULT_MAX[args.framing]
    proto = type("Echo", (PROTOCOLS[args.framing],), {"MAX_LENGTH": max_length})
    factory = protocol.Factory.forProtocol(proto)
    port = reactor.listenTCP(int(port), factory, interface=host)
    addr = port.getHost()
    print(f"listening on {addr.host}:{addr.port}", flush=True)
    reactor.run()  # Twisted installs its SIGINT handler: Ctrl-C stops the reactor, exit 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
