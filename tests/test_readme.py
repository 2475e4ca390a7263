"""The README's quickstarts, run as a newcomer pastes them, against `ossabus up` with the fake provider.

Every code block marked `<!-- readme-test: NAME -->` in README.md is extracted and run unchanged,
except that the documented address (port 8080) becomes the test stack's. Docs that drift from the
product fail here. Python and shell blocks in the quickstart must be marked, so a new one cannot
slip in untested.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port, llm_env, rendered_agents, start_stack

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
BLOCK = re.compile(r"<!-- readme-test: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<code>.*?)```", re.S)
BLOCKS = {m["name"]: (m["lang"], m["code"]) for m in BLOCK.finditer(README)}
QUICKSTART = README[README.index("## Quickstart") : README.index("## Architecture")]


@pytest.fixture(scope="module")
def readme_stack(fake_llm, mcp_servers, tmp_path_factory):
    """`ossabus up` with its own embedded, locked NATS, as the README runs it, plus the test agents."""
    root = tmp_path_factory.mktemp("readme")
    data = root / "data"
    env = {
        **llm_env(fake_llm),
        "OSSABUS_DATA_DIR": str(data),
        "OSSABUS_MCP_CONFIG": str(mcp_servers.config),
        "NATS_URL": None,
    }
    args = ["up", "--nats-port", "-1", "--manifests", str(rendered_agents(fake_llm.base_url))]
    running = start_stack(args, root / "ossabus.log", free_port(), env=env)
    running.env = env
    running.workdir = root / "work"
    running.workdir.mkdir()
    for shared in ("manifests", "contracts"):  # the blocks name repo paths, as from a checkout
        (running.workdir / shared).symlink_to(REPO / shared)
    yield running
    assert running.stop() == 0, running.logs()


def localized(code: str, stack) -> str:
    port = stack.base_url.rsplit(":", 1)[1]
    return re.sub(r"(localhost|127\.0\.0\.1):8080", f"127.0.0.1:{port}", code)


def run_block(name: str, stack, preamble: str = "", then: str = "") -> str:
    """Run the block as it is in the README; `preamble` and `then` only for a block that is a
    fragment of a longer program (the approval snippet continues a parked run)."""
    lang, code = BLOCKS[name]
    code = localized(code, stack) + then
    env = {k: v for k, v in {**os.environ, **stack.env}.items() if v is not None}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # as with the venv active
    if lang == "bash":
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        script = stack.workdir / f"{name}.py"
        script.write_text(preamble + code)
        command = [sys.executable, str(script)]
    done = subprocess.run(command, cwd=stack.workdir, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"README block {name!r} failed:\n{done.stdout}\n{done.stderr}\n{stack.logs()[-3000:]}"
    return done.stdout


def test_every_python_and_shell_block_of_the_quickstart_is_run_here():
    fences = re.findall(r"(?:<!-- readme-test: [\w-]+ -->\n)?```(\w+)\n", QUICKSTART)
    marked = re.findall(r"<!-- readme-test: [\w-]+ -->\n```(\w+)\n", QUICKSTART)
    runnable = [lang for lang in fences if lang in ("python", "bash", "sh")]
    assert len(marked) == len(runnable), "a quickstart block is not marked `<!-- readme-test: NAME -->`"
    tested = {name for name in BLOCKS}
    assert tested == {
        "curl",
        "cli",
        "nats-client",
        "workflow",
        "openai-sdk",
        "approvals",
        "curl-chat",
        "responses",
        "file-search",
    }


def test_the_curl_quickstart(readme_stack):
    out = run_block("curl", readme_stack)
    assert '"name": "math-tutor"' in out or '"name":"math-tutor"' in out
    assert "haiku-writer" in out
    assert '"valid":true' in out.replace(" ", "")


def test_the_command_line_quickstart(readme_stack):
    out = run_block("cli", readme_stack)
    assert "19 valid" in out
    written = (readme_stack.workdir / "my-agent.ossa.yaml").read_text()
    assert "name: release-notes-writer" in written
    assert (readme_stack.workdir / "contracts-out").is_dir()


def test_the_nats_client_quickstart(readme_stack):
    out = run_block("nats-client", readme_stack)
    lines = out.splitlines()
    assert lines[0] == "thread.run.created"
    assert "task.result" in lines
    assert "Echo: Solve 3x + 11 = 14" in lines
    assert lines[-1] == "Echo: And 2x = 8?"


def test_the_workflow_quickstart(readme_stack):
    out = run_block("workflow", readme_stack)
    lines = out.splitlines()
    streamed = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert streamed[:2] == ["workflow.run.queued", "workflow.run.in_progress"]
    assert streamed.count("workflow.step.completed") == 4  # two solves, the loop, the review
    assert streamed[-2:] == ["workflow.run.completed", "done"]
    cli = lines[len(streamed) :]
    assert cli[0].startswith("wfrun_")
    assert cli[1:3] == ["workflow.run.queued", "workflow.run.in_progress"]
    assert "workflow.step.completed review" in cli
    assert cli[-1] == '"Echo: Check these solutions: Echo: 5x = 25"'


def test_the_openai_sdk_quickstart(readme_stack):
    out = run_block("openai-sdk", readme_stack)
    assert out.startswith("Echo: 3x + 11 = 14?\nEcho: Solve 3x + 11 = 14\n"), out
    assert out.rstrip().endswith("Echo: Solve 3x + 11 = 14")  # the streamed answer


def test_the_openai_sdk_quickstart_says_why_without_a_provider_key(readme_stack, tmp_path):
    """With no key the snippet must not print the user's own message as if it were the answer."""
    _, code = BLOCKS["openai-sdk"]
    # the same snippet against an agent whose provider has no key (tests/agents/keyless-agent.yaml)
    keyless = localized(code, readme_stack).replace("asst_mathXtutor", "asst_keylessXagent")
    keyless = keyless[: keyless.index("# streaming")]
    keyless = keyless.replace('model="math-tutor"', 'model="echo-agent"')
    script = tmp_path / "keyless.py"
    script.write_text(keyless)
    env = {k: v for k, v in {**os.environ, **readme_stack.env}.items() if v is not None}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("failed LastError(code='server_error'"), last
    assert "ANTHROPIC_API_KEY" in last or "API key" in last


PARKED = """
from openai import OpenAI

client = OpenAI(base_url="{base}/v1", api_key="unused")
thread = client.beta.threads.create(
    messages=[{{"role": "user", "content": 'refund [[call:refund {{"order": "A-7", "amount": 20}}]]'}}]
)
run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id="asst_approvalXagent")
assert run.status == "requires_action", run
"""


def test_the_approval_quickstart(readme_stack):
    preamble = PARKED.format(base=readme_stack.base_url)
    then = "\nrun = client.beta.threads.runs.poll(run.id, thread_id=thread.id)\nprint(run.status)\n"
    out = run_block("approvals", readme_stack, preamble, then)
    assert out.splitlines()[-1] == "completed"


def test_the_curl_chat_quickstart(readme_stack):
    out = run_block("curl-chat", readme_stack)
    assert out.startswith("data: ")
    assert "chat.completion.chunk" in out
    assert out.rstrip().endswith("data: [DONE]")


def test_the_responses_quickstart(readme_stack):
    lines = run_block("responses", readme_stack).splitlines()
    assert lines[:3] == ["Echo: Solve 3x + 11 = 14", "Echo: And 2x = 8?", "Echo: Explain it step by step"]
    assert lines[3:] == [
        "user Hello from Assistants",
        "user Hello from Responses",
        "assistant Echo: Hello from Responses",
    ]


def test_the_file_search_quickstart(readme_stack):
    lines = run_block("file-search", readme_stack).splitlines()
    assert lines == [
        "manual.txt The Falcon drill warranty lasts 24 months.",
        "Echo: How long is the Falcon drill warranty?",
    ]
