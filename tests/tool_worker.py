"""A tool worker in its own Python process, written with ossabus.tools as a user would.

python tests/tool_worker.py <nats-url>
"""

import asyncio
import logging
import sys

from ossabus.tools import ToolWorker

worker = ToolWorker(sys.argv[1], announce_every_s=5)


@worker.tool(parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
async def get_weather(city: str) -> dict:
    """The weather in a city."""
    return {"city": city, "sky": "clear", "celsius": 21}


@worker.tool()
async def slow_tool(seconds: float = 3) -> str:
    await asyncio.sleep(seconds)
    return "finally"


@worker.tool()
def broken_tool() -> str:
    raise RuntimeError("the database is on fire")


FAILURES: dict[str, int] = {}


@worker.tool()
def flaky_tool(key: str) -> str:
    """Fails the first two calls for each key: a backend with a hiccup."""
    FAILURES[key] = FAILURES.get(key, 0) + 1
    if FAILURES[key] <= 2:
        raise ConnectionError("backend hiccup")
    return f"worked on attempt {FAILURES[key]}"


@worker.tool()
def big_tool() -> str:
    return "x" * 100_000


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    asyncio.run(worker.serve())
