"""An MCP server for the tests, written with the official `mcp` SDK.

    python tests/mcp_server.py                 # stdio (the dispatcher starts it)
    python tests/mcp_server.py --http PORT     # streamable HTTP on 127.0.0.1:PORT/mcp

Every start appends a line to $MCP_TEST_STARTS (when set), so a test can count restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("ossabus-test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def lookup_order(order_id: str) -> dict:
    """Look up an order by its id."""
    return {"order_id": order_id, "status": "shipped", "server_pid": os.getpid()}


@server.tool()
def broken() -> str:
    """Always fails."""
    raise ValueError("the order database is down")


@server.tool()
def crash() -> str:
    """Kills this server process mid-call."""
    os._exit(3)


@server.tool()
async def sleepy(seconds: float) -> str:
    """Answers after `seconds`."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, help="serve streamable HTTP on this port instead of stdio")
    args = parser.parse_args()
    starts = os.environ.get("MCP_TEST_STARTS")
    if starts:
        with open(starts, "a") as log:
            log.write(f"{os.getpid()} {time.time()}\n")
    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
