"""The playground page in headless Chromium (Debian's package, driven by playwright-core): streaming
tokens, a tool call, an approval click, and a reload that brings the conversation back."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, missing

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def chromium() -> str:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    return CHROMIUM


def test_the_playground_streams_shows_tools_takes_approvals_and_survives_a_reload(api_stack, node_clients, chromium):
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "playground.png"
    screenshot.unlink(missing_ok=True)
    done = subprocess.run(
        ["node", str(node_clients / "playground.mjs"), api_stack.base_url, str(screenshot)],
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "CHROMIUM_PATH": chromium},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    partial = [n for n in seen["partialLengths"] if 0 < n < 30]
    assert len(partial) >= 3, seen["partialLengths"]  # tokens arrived one by one, not all at once
    assert 'lookup({"order":"P-1"}) [output-available]' in seen["toolText"]
    assert '"received":{"order":"P-1"}' in seen["toolText"]
    assert "tool call: refund" in seen["steps"]
    assert "finished (tool-calls)" in seen["steps"]  # parked for the approval
    assert seen["steps"][-1] == "finished (stop)"
    assert len(seen["before"]) == 6
    assert seen["after"] == seen["before"]  # the reload shows the same conversation
    assert seen["consoleErrors"] == []
    assert screenshot.stat().st_size > 10_000
