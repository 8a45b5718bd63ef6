"""A WebSocket echo server nobody here wrote (Python's `websockets`), on 127.0.0.1 port 0.

Prints `listening on 127.0.0.1:PORT` first, then serves until killed. Messages up to 1 MiB
(over it: 1009, as torsion's ws-echo).
"""

import asyncio

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=1 << 20) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await server.serve_forever()


asyncio.run(main())
