"""Forward TCP connections: ``python tcp_forward.py LISTEN_HOST LISTEN_PORT TO_HOST TO_PORT``.

Used by tests/browser/test_thin_link.py to reach the test server from a network namespace the
test made (run there with ``ip netns exec``), so the learner's page keeps the server's own
origin (http://127.0.0.1:PORT: a secure context, its cookies) while its packets cross the
shaped link. Prints ``ready`` once listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def main(listen_host: str, listen_port: int, to_host: str, to_port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(to_host, to_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, listen_host, listen_port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
