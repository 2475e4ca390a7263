"""A tool worker serving `noop` (answers at once), for bench/tools.py."""

import asyncio
import sys

from ossabus.tools import ToolWorker

worker = ToolWorker(sys.argv[1])


@worker.tool()
async def noop() -> str:
    return "ok"


if __name__ == "__main__":
    asyncio.run(worker.serve())
