"""A process that tracks events into a spool until it is killed (``python -m tests.durable_child``).

Arguments: RUNTIME (threaded, asyncio or trio), SPOOL_DIR, HOST. It prints one line
per call that returned True, ``accepted <messageId>``, flushed at once, so the
parent knows exactly which events the client promised to deliver before it
killed the process. It never stops by itself (a safety cap ends it after
100,000 calls).
"""

from __future__ import annotations

import asyncio
import sys

SAFETY_CAP = 100_000


def report(ok: bool, message: dict[str, object]) -> None:
    if ok:
        sys.stdout.write(f"accepted {message['messageId']}\n")
        sys.stdout.flush()


def run_threaded(spool: str, host: str) -> None:
    from segment_runtimes.threaded import Client

    client = Client("durable-key", host=host, spool_dir=spool, upload_size=10, max_retries=1000)
    for index in range(SAFETY_CAP):
        report(*client.track("user-1", "Durable", {"i": index}))


async def run_asyncio(spool: str, host: str) -> None:
    from segment_runtimes.asyncio import AsyncClient

    async with AsyncClient("durable-key", host=host, spool_dir=spool, upload_size=10, max_retries=1000) as client:
        for index in range(SAFETY_CAP):
            report(*client.track("user-1", "Durable", {"i": index}))
            if index % 5 == 0:
                await asyncio.sleep(0)  # let the worker deliver, as a service would


def run_trio(spool: str, host: str) -> None:
    import trio

    from segment_runtimes.trio import open_client

    async def main() -> None:
        async with open_client("durable-key", host=host, spool_dir=spool, upload_size=10, max_retries=1000) as client:
            for index in range(SAFETY_CAP):
                report(*client.track("user-1", "Durable", {"i": index}))
                if index % 5 == 0:
                    await trio.sleep(0)

    trio.run(main)


def main() -> None:
    runtime, spool, host = sys.argv[1:4]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if runtime == "threaded":
        run_threaded(spool, host)
    elif runtime == "asyncio":
        asyncio.run(run_asyncio(spool, host))
    else:
        run_trio(spool, host)


if __name__ == "__main__":
    main()
