#!/usr/bin/env python3
"""Plain-asyncio echo server for the torsion benchmark.

An ``asyncio.Protocol`` whose ``data_received`` writes the data straight back with
``transport.write(data)``: the standard library's idiomatic callback-style echo
server, on the default event loop, or with ``--uvloop`` on uvloop's (libuv) loop
(same protocol code; uvloop must be installed).

Usage: ``python3 bench/asyncio_echo.py [--listen 127.0.0.1:0] [--uvloop]``. The first
line on standard output is ``listening on <addr>``.
"""

import argparse
import asyncio
import socket
import sys


class Echo(asyncio.Protocol):
    """Echoes every received chunk back on the same connection."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def parse_addr(text):
    """Splits ``host:port`` or ``[v6host]:port`` into ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def format_addr(sockname):
    """Formats a socket name like Rust's ``SocketAddr`` display."""
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve(host, port):
    loop = asyncio.get_running_loop()
    # Backlog 1024 like mio and tokio (asyncio's default of 100 would make the
    # 1000-connection scenario wait on SYN retransmissions). asyncio already sets
    # TCP_NODELAY on accepted sockets.
    server = await loop.create_server(Echo, host, port, family=socket.AF_UNSPEC, backlog=1024)
    print(f"listening on {format_addr(server.sockets[0].getsockname())}", flush=True)
    async with server:
        await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=parse_addr, default=("127.0.0.1", 0),
                        help="address to listen on, HOST:PORT (port 0: kernel chooses)")
    parser.add_argument("--uvloop", action="store_true",
                        help="run on uvloop's event loop instead of asyncio's default")
    args = parser.parse_args()
    host, port = args.listen
    try:
        if args.uvloop:
            import uvloop  # pylint: disable=import-outside-toplevel

            # uvloop sets TCP_NODELAY on accepted TCP sockets too.
            uvloop.run(serve(host, port))
        else:
            asyncio.run(serve(host, port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
