#!/usr/bin/env python3
"""A loopback TCP proxy that delays every byte by a fixed time in each
direction, to stand in for network latency (this kernel has no netem).

    delay_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS

Binds 127.0.0.1 only. Bytes keep flowing at full rate: each chunk is held
for DELAY_MS from when it was read, not queued behind the previous chunk's
delay, so throughput is unchanged and only latency is added. TCP handshakes
with the proxy are local (not delayed), for every client alike. Prints
"ready" once listening; stops on SIGTERM/SIGINT.
"""

import asyncio
import signal
import sys


async def pump(reader, writer, delay):
    """Copies reader to writer, each chunk delivered `delay` after reading."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is None:
                try:
                    if writer.can_write_eof():
                        writer.write_eof()
                except OSError:
                    pass
                return
            writer.write(data)
            try:
                await writer.drain()
            except OSError:
                return

    deliverer = asyncio.create_task(deliver())
    try:
        while True:
            try:
                data = await reader.read(65536)
            except OSError:
                data = b""
            queue.put_nowait((loop.time() + delay, data or None))
            if not data:
                break
        await deliverer
    finally:
        deliverer.cancel()


async def handle(client_reader, client_writer, upstream_port, delay):
    try:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            pump(client_reader, up_writer, delay),
            pump(up_reader, client_writer, delay),
        )
    finally:
        for w in (up_writer, client_writer):
            try:
                w.close()
            except OSError:
                pass


async def main():
    listen_port, upstream_port, delay_ms = (int(a) for a in sys.argv[1:4])
    delay = delay_ms / 1000.0
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream_port, delay),
        "127.0.0.1",
        listen_port,
        backlog=1024,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
