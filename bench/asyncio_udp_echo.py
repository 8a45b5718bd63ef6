#!/usr/bin/env python3
"""Plain-asyncio UDP echo server for the torsion benchmark.

An ``asyncio.DatagramProtocol`` whose ``datagram_received`` sends the datagram straight
back with ``transport.sendto(data, addr)``, on the default event loop (no uvloop).

Usage: ``python3 bench/asyncio_udp_echo.py [--listen 127.0.0.1:0]``. The first line on
standard output is ``listening on <addr>``.
"""

import argparse
import asyncio
import signal
import sys


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


def parse_addr(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


async def main(host, port):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(host, port))
    name = transport.get_extra_info("sockname")
    h = f"[{name[0]}]" if ":" in name[0] else name[0]
    print(f"listening on {h}:{name[1]}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    await stop
    transport.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", type=parse_addr, default=("127.0.0.1", 0))
    args = parser.parse_args()
    asyncio.run(main(*args.listen))
    sys.exit(0)
