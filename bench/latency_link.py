#!/usr/bin/env python3
"""A loopback TCP link with a fixed added latency: every chunk sent from
the client towards the target is delivered DELAY ms after it arrived
(order kept, pipelined), answers flow back at once. So each store round
trip through the link costs DELAY ms more, as across a network.

    python3 bench/latency_link.py --listen 18011 --target 18010 --delay-ms 2

127.0.0.1 only; standard library only; exits on SIGTERM."""
import argparse
import asyncio
import time


async def pump(reader, writer, delay):
    queue = asyncio.Queue()

    async def read():
        while True:
            data = await reader.read(65536)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    async def write():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(read(), write())
    except (ConnectionError, asyncio.CancelledError):
        writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--target", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=2.0)
    args = parser.parse_args()
    delay = args.delay_ms / 1000.0

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", args.target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, server_writer, delay),
            pump(server_reader, client_writer, 0.0),
            return_exceptions=True,
        )

    server = await asyncio.start_server(handle, "127.0.0.1", args.listen)
    print(f"PORT={args.listen}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
