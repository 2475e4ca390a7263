"""The LiteLLM proxy as a user would run it instead of ossabus: its own virtual environment (so its
dependencies never mix with ossabus's), one worker, a master key, the fake upstream as its model.

The proxy is installed at the litellm version ossabus pins (some litellm releases were compromised:
a benchmark must not pull an unvetted one), into `~/.cache/ossabus-bench/` once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
from common import ROOT, free_port

MASTER_KEY = "sk-bench-master"
CACHE = Path(os.environ.get("OSSABUS_BENCH_CACHE") or Path.home() / ".cache" / "ossabus-bench")


def pinned_litellm() -> str:
    match = re.search(r'"litellm==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    if not match:
        raise SystemExit("pyproject.toml pins no litellm version")
    return match.group(1)


def proxy_venv() -> Path:
    version = pinned_litellm()
    venv = CACHE / f"litellm-proxy-{version}"
    binary = venv / "bin" / "litellm"
    if not binary.exists():
        print(f"installing the LiteLLM proxy {version} into {venv} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={version}"],
            check=True,
        )
    return venv


def start_proxy(upstream: str, data: Path) -> tuple[subprocess.Popen, str]:
    """The proxy serving `fake-model` from the upstream; returns (process, base URL)."""
    venv = proxy_venv()
    config = data / "litellm-proxy.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: fake-model\n"
        "    litellm_params:\n"
        "      model: openai/fake-model\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-bench\n"
        "general_settings:\n"
        f"  master_key: {MASTER_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    port = free_port()
    log = (data / "litellm-proxy.log").open("w")
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    proc = subprocess.Popen(
        [str(venv / "bin" / "litellm"), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the LiteLLM proxy exited; see {data / 'litellm-proxy.log'}")
        try:
            if httpx.get(f"{base}/health/liveliness", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"the LiteLLM proxy did not start; see {data / 'litellm-proxy.log'}")
