"""A WebSocket client nobody here wrote (Python's `websockets`) against an echo server.

Usage: ws_client.py HOST:PORT. Prints one `OK <check>` line per check and exits 0, or
raises (exit 1). Run against torsion's ws-echo and, as a control, against ws_echo_server.py.
"""

import asyncio
import os
import socket
import struct
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ADDR = sys.argv[1]
URI = f"ws://{ADDR}/"
MIB = 1 << 20


def pattern(n, seed):
    return bytes(((i * 31 + seed) ^ (i >> 8)) & 0xFF for i in range(n))


async def echo_sizes():
    async with connect(URI, max_size=None, open_timeout=10) as ws:
        for n in [0, 1, 125, 126, 127, 65535, 65536, 100_000, MIB]:
            data = pattern(n, n & 0xFF)
            await ws.send(data)
            got = await ws.recv()
            assert got == data, f"binary echo of {n} bytes differs"
            text = ("é€𝄞x" * (n // 10 + 1))[: max(n // 4, 0)]
            await ws.send(text)
            got = await ws.recv()
            assert got == text, f"text echo of {len(text)} chars differs"
    print("OK echo text and binary, 0 B to 1 MiB")


async def fragmented():
    async with connect(URI, max_size=None, open_timeout=10) as ws:
        # An iterable is sent as one fragmented message (one frame per item).
        parts = ["frag", "mént", "ed 𝄞", "", "!"]
        await ws.send(parts)
        assert await ws.recv() == "".join(parts)
        parts = [pattern(1000, 1), pattern(70_000, 2), pattern(1, 3)]
        await ws.send(parts)
        assert await ws.recv() == b"".join(parts)
    print("OK fragmented sends reassembled")


async def ping():
    async with connect(URI, open_timeout=10) as ws:
        waiter = await ws.ping(b"are you there")
        latency = await asyncio.wait_for(waiter, 10)
        assert latency >= 0
    print("OK ping answered with pong")


async def close_codes():
    for code, reason in [(1000, "bye"), (1001, "going"), (4001, "custom")]:
        ws = await connect(URI, open_timeout=10)
        await ws.close(code, reason)
        assert ws.close_code == code, f"server answered {ws.close_code} to {code}"
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == code
    # Over the server's 1 MiB message limit: it fails the connection with 1009.
    async with connect(URI, max_size=None, open_timeout=10) as ws:
        await ws.send(b"\0" * (MIB + 1))
        try:
            await asyncio.wait_for(ws.recv(), 10)
            raise AssertionError("a message over the limit was echoed")
        except ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 1009, f"got {e.rcvd}"
    print("OK close codes echoed; 1 MiB + 1 closed with 1009")


def raw_frames():
    """What `websockets` will not send: an unmasked client frame (→ 1002) and bad UTF-8 (→ 1007)."""
    host, port = ADDR.rsplit(":", 1)
    for frame, code in [(b"\x81\x02hi", 1002), (b"\x81\x81" + b"\0\0\0\0" + b"\xff", 1007)]:
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            assert chunk, "closed during the handshake"
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        s.sendall(frame)
        while len(rest) < 4:
            chunk = s.recv(4096)
            assert chunk, "closed without a close frame"
            rest += chunk
        assert rest[0] == 0x88, rest[:4]
        got = struct.unpack("!H", rest[2:4])[0]
        assert got == code, f"expected close {code}, got {got}"
        s.close()
    print("OK unmasked frame closed with 1002, bad UTF-8 with 1007")


async def main():
    await echo_sizes()
    await fragmented()
    await ping()
    await close_codes()
    raw_frames()


asyncio.run(asyncio.wait_for(main(), float(os.environ.get("WS_CLIENT_DEADLINE", "60"))))
