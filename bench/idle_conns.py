#!/usr/bin/env python3
"""Opens N idle TCP connections to a loopback server and holds them (bench/report).

Usage: ``python3 bench/idle_conns.py --addr 127.0.0.1:PORT --conns 1000 --hold 5``.
Connects one connection at a time (blocking, 10 s timeout each), prints ``open N`` on
standard output once all are connected, holds them open without sending anything for
``--hold`` seconds (or until killed), then closes them. Loopback addresses only.
"""

import argparse
import ipaddress
import socket
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True, help="server address, IP:PORT (loopback)")
    parser.add_argument("--conns", type=int, default=1000, help="connections to open")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds to hold them open")
    args = parser.parse_args()
    host, _, port = args.addr.rpartition(":")
    host = host.strip("[]")
    if not ipaddress.ip_address(host).is_loopback:
        parser.error(f"{host} is not a loopback address")
    if not 1 <= args.conns <= 100_000 or not 0 < args.hold <= 600:
        parser.error("--conns must be in 1..100000 and --hold in (0, 600]")
    socks = []
    for _ in range(args.conns):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(sock)
    print(f"open {len(socks)}", flush=True)
    time.sleep(args.hold)
    for sock in socks:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
