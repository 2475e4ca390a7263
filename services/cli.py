"""The `ossabus` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

import yaml

from ossabus import __version__

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
SERVICE_NAMES = ("registry", "executor", "workflows", "dispatcher", "relay", "telemetry", "retrieval", "sandbox")


def _add_service_options(p: argparse.ArgumentParser, relay_only: str) -> None:
    """Options `up` and `serve` share; `relay_only` marks those that only the relay reads."""
    p.add_argument("--host", default="127.0.0.1", help=f"HTTP address{relay_only} (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help=f"HTTP port{relay_only} (default 8080)")
    p.add_argument(
        "--reuse-port",
        action="store_true",
        help=f"share the HTTP port with other relay processes (SO_REUSEPORT){relay_only}",
    )
    p.add_argument(
        "--manifests",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="also load manifests from DIR (repeatable)",
    )
    p.add_argument("--no-bundled-manifests", action="store_true", help="skip the manifests shipped with ossabus")
    p.add_argument("--max-runs", type=int, default=64, help="runs one executor process carries at once (default 64)")
    p.add_argument(
        "--max-body-bytes", type=int, help="largest HTTP request body (default 8 MiB; $OSSABUS_MAX_BODY_BYTES)"
    )
    p.add_argument(
        "--mcp-config",
        type=Path,
        metavar="FILE",
        help="MCP servers the dispatcher may reach, in the `mcpServers` JSON/YAML format ($OSSABUS_MCP_CONFIG)",
    )
    p.add_argument(
        "--auth-file",
        type=Path,
        metavar="FILE",
        help=f"API keys with their projects and roles (YAML `keys:`){relay_only} ($OSSABUS_AUTH_FILE)",
    )
    _add_bus_options(p)


def _add_bus_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nats-url",
        help="use this NATS server (default: $NATS_URL); may carry user:password@ or token@, tls:// for TLS",
    )
    p.add_argument("--nats-creds", metavar="FILE", help="NATS .creds file (JWT and nkey) ($OSSABUS_NATS_CREDS)")
    p.add_argument("--nats-nkey", metavar="FILE", help="NATS nkey seed file ($OSSABUS_NATS_NKEY)")
    p.add_argument("--nats-ca", metavar="FILE", help="CA certificates to trust for NATS TLS ($OSSABUS_NATS_CA)")
    p.add_argument("--nats-cert", metavar="FILE", help="client certificate for NATS TLS ($OSSABUS_NATS_CERT)")
    p.add_argument("--nats-key", metavar="FILE", help="its private key ($OSSABUS_NATS_KEY)")
    p.add_argument("--log-format", choices=("text", "json"), help="log format (default: text)")
    p.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="JetStream replicas for streams and buckets (default: 1 when creating them; existing ones keep theirs)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ossabus", description="Run OSSA agents on NATS.")
    parser.add_argument("--version", action="version", version=f"ossabus {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start nats-server (unless --nats-url) and all five services in this process")
    _add_service_options(up, "")
    up.add_argument("--data-dir", type=Path, help="where JetStream keeps data (default: per-user data folder)")
    up.add_argument("--nats-port", type=int, default=4222, help="port of the embedded nats-server (-1: random)")
    up.add_argument(
        "--without",
        action="append",
        default=[],
        choices=SERVICE_NAMES,
        metavar="SERVICE",
        help="do not run SERVICE in this process (e.g. run executors as `ossabus serve executor`)",
    )

    serve = sub.add_parser("serve", help="run one service against a shared NATS")
    serve.add_argument("service", choices=SERVICE_NAMES)
    _add_service_options(serve, " (relay)")

    val = sub.add_parser("validate", help="check OSSA manifests; exit 1 when any has errors")
    val.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    val.add_argument("--strict", action="store_true", help="every official-schema error is an error")
    val.add_argument("--json", action="store_true", help="machine-readable output")

    conv = sub.add_parser("convert", help="convert a manifest or an OpenAI Assistant object")
    conv.add_argument("path", type=Path)
    conv.add_argument("--to", required=True, choices=("openai-assistant", "vercel-ai", "ossa"))
    conv.add_argument(
        "--api-version",
        choices=("ossa/v0.5", "ossa/v0.4"),
        help="with --to ossa: upgrade the manifest to this version (what changed goes to stderr)",
    )

    imp = sub.add_parser("import-assistant", help="OpenAI Assistant JSON -> OSSA manifest YAML")
    imp.add_argument("file", type=Path)
    imp.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    imp.add_argument(
        "--api-version",
        default="ossa/v0.5",
        choices=("ossa/v0.5", "ossa/v0.4", "ossa/v0.3.4"),
        help="OSSA version to write (default ossa/v0.5, the current one)",
    )

    creds = sub.add_parser(
        "credentials", help="print the NATS URL (with its password) that `ossabus up` made for a role"
    )
    creds.add_argument("role", choices=("client", "worker"), help="client: task publishers; worker: tool workers")
    creds.add_argument("--data-dir", type=Path, help="the data folder `ossabus up` used (default: per-user)")

    run = sub.add_parser("run", help="run an agent or a workflow over NATS (the `client` role of the bus)")
    run.add_argument("name", help="agent or workflow name")
    run.add_argument("--input", required=True, help="JSON (an object, a string), or plain text for an agent")
    run.add_argument("--follow", action="store_true", help="print every event until the run ends, then its output")
    run.add_argument("--nats-url", default=None, help="default: NATS_URL, else the local `ossabus up`'s client URL")
    contracts = sub.add_parser("contracts", help="bus contracts")
    csub = contracts.add_subparsers(dest="contracts_command", required=True)
    export = csub.add_parser("export", help="write JSON Schemas of the bus messages to DIR")
    export.add_argument("dir", type=Path)
    asyncapi = csub.add_parser("asyncapi", help="print the AsyncAPI 3.0 document of the bus")
    asyncapi.add_argument("--format", choices=("yaml", "json"), default="yaml")
    asyncapi.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    csub.add_parser("nats-auth", help="print the NATS users and permissions block for your own nats-server")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "up": cmd_up,
        "serve": cmd_serve,
        "validate": cmd_validate,
        "convert": cmd_convert,
        "import-assistant": cmd_import_assistant,
        "contracts": cmd_contracts,
        "credentials": cmd_credentials,
        "run": cmd_run,
    }[args.command]
    try:
        return handler(args)
    except BrokenPipeError:  # `ossabus validate ... | head`
        return EXIT_OK


def cmd_credentials(args: argparse.Namespace) -> int:
    from ossabus.runtime.bus_auth import local_url
    from ossabus.runtime.settings import default_data_dir

    data_dir = args.data_dir or default_data_dir()
    url = local_url(args.role, data_dir)
    if url is None:
        return _fail(f"no credentials in {data_dir}: start `ossabus up` (with its embedded NATS) there first", 1)
    print(url)
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """`ossabus run NAME --input JSON [--follow]`: a workflow run or an agent's task, over NATS."""
    import asyncio
    import json

    try:
        value = json.loads(args.input)
    except json.JSONDecodeError:
        value = args.input  # plain text, for an agent
    import nats.errors

    try:
        return asyncio.run(_run_over_nats(args.name, value, args.follow, args.nats_url))
    except (OSError, nats.errors.Error) as exc:
        return _fail(f"cannot reach NATS ({type(exc).__name__}: {exc}); is `ossabus up` running?", 1)
    except TimeoutError:
        return _fail("no answer from ossabus in time; the run may still be going", 1)


async def _run_over_nats(name: str, value, follow: bool, url: str | None) -> int:
    """Offered to the workflow runners first (the `client` role does not read the registry): a name
    that is an agent comes back refused as `not a Workflow` and is then submitted as a task."""
    import json

    from ossabus.client import OssabusClient, TaskError

    async def quiet(_: Exception) -> None:  # nats-py prints each failed attempt; the command says it once
        return None

    async with await OssabusClient.connect(url, error_cb=quiet, max_reconnect_attempts=3) as client:
        try:
            if not isinstance(value, list):
                handle = await client.start_workflow(name, value)
                events = handle.events()
                try:
                    first = await anext(events)
                except TaskError as refused:
                    if not (refused.code == "invalid_request" and refused.param == "name"):
                        raise
                else:
                    print(handle.run_id)
                    if not follow:
                        return EXIT_OK
                    async for event in _prepend(first, events):
                        step = event.data.get("id") if event.event.startswith("workflow.step.") else None
                        print(f"{event.event} {step}" if step else event.event)
                    run = await handle.result()
                    if run.status == "completed":
                        print(json.dumps(run.output, indent=2))
                        return EXIT_OK
                    print(json.dumps(run.last_error.model_dump() if run.last_error else run.status, indent=2))
                    return 1
            task = await client.submit(name, value)
            print(task.run_id)
            if not follow:
                return EXIT_OK
            async for event in task.events():
                print(event.event)
            result = await task.result()
            print(result.output_text if result.output is None else json.dumps(result.output, indent=2))
            return EXIT_OK if result.status == "completed" else 1
        except TaskError as error:
            return _fail(f"{error.code}: {error.message}", 1)


async def _prepend(first, rest):
    yield first
    async for item in rest:
        yield item


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"ossabus: {message}", file=sys.stderr)
    return code


# --- running ---------------------------------------------------------------------------------------


def _settings(args: argparse.Namespace):
    from ossabus.runtime.settings import Settings

    settings = Settings(
        host=args.host,
        port=args.port,
        manifest_dirs=list(args.manifests),
        load_bundled_manifests=not args.no_bundled_manifests,
        replicas=args.replicas,
        max_runs=args.max_runs,
    )
    if args.max_body_bytes:
        settings.max_body_bytes = args.max_body_bytes
    if getattr(args, "reuse_port", False):
        settings.reuse_port = True
    if args.mcp_config:
        settings.mcp_config = str(args.mcp_config)
    if args.auth_file:
        settings.auth_file = str(args.auth_file)
    if args.nats_url:
        settings.nats_url = args.nats_url
    for option in ("nats_creds", "nats_nkey", "nats_ca", "nats_cert", "nats_key"):
        if getattr(args, option, None):
            setattr(settings, option, getattr(args, option))
    if args.log_format:
        settings.log_format = args.log_format
    if getattr(args, "data_dir", None):
        settings.data_dir = args.data_dir
    if getattr(args, "nats_port", None) is not None:
        settings.nats_port = args.nats_port
    for folder in settings.manifest_dirs:
        if not folder.exists():
            raise FileNotFoundError(f"--manifests {folder}: no such folder")
    if settings.mcp_config:
        from ossabus.dispatcher.mcp_config import McpConfigError, load_config

        try:
            load_config(settings.mcp_config)
        except McpConfigError as exc:
            raise FileNotFoundError(str(exc)) from exc
    return settings


def _run(args: argparse.Namespace, names: list[str], embedded: bool) -> int:
    from ossabus.runtime.logs import configure_logging
    from ossabus.runtime.nats_server import NatsServerError
    from ossabus.runtime.stack import StartupError, run
    from ossabus.runtime.supervisor import leave

    try:
        settings = _settings(args)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    configure_logging(settings.log_format, settings.log_level)
    if not embedded and not settings.nats_url:
        settings.nats_url = "nats://127.0.0.1:4222"
    from ossabus.relay.service import HttpPortError

    try:
        asyncio.run(run(settings, names, embedded=embedded))
    except (StartupError, NatsServerError, HttpPortError) as exc:
        return leave(_fail(str(exc), 1))
    except KeyboardInterrupt:
        pass
    except Exception:
        logging.getLogger("ossabus").exception("ossabus stopped on an unexpected error")
        return leave(1)
    return leave(EXIT_OK)


def cmd_up(args: argparse.Namespace) -> int:
    return _run(args, [name for name in SERVICE_NAMES if name not in args.without], embedded=True)


def cmd_serve(args: argparse.Namespace) -> int:
    return _run(args, [args.service], embedded=False)


# --- manifests -------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from ossabus.registry.catalog import documents_from_paths, validate_batch

    docs, unreadable = documents_from_paths(args.paths)
    batch = validate_batch(docs, strict=args.strict, unreadable=unreadable)
    if args.json:
        out = {
            "valid": batch.ok,
            "strict": args.strict,
            "unreadable": [d.model_dump(mode="json") for d in batch.unreadable],
            "skipped": [d.model_dump(mode="json") for d in batch.skipped],
            "manifests": [
                {
                    "file": e.document.file,
                    "document": e.document.index,
                    "valid": e.valid,
                    **e.report.model_dump(mode="json", exclude={"strict"}),
                    "env_refs": e.definition.env_refs if e.definition else [],
                }
                for e in batch.entries
            ],
        }
        print(json.dumps(out, indent=2))
    else:
        for diagnostic in batch.diagnostics:
            print(diagnostic.render())
        valid = sum(1 for e in batch.entries if e.valid)
        invalid = len(batch.entries) - valid + len(batch.unreadable)
        errors = sum(1 for d in batch.diagnostics if d.severity == "error")
        warnings = sum(1 for d in batch.diagnostics if d.severity == "warning")
        mode = "strict" if args.strict else "lenient"
        print(
            f"{len(batch.entries)} manifest(s) checked ({mode}): {valid} valid, {invalid} invalid; "
            f"{errors} error(s), {warnings} warning(s)"
        )
    return EXIT_OK if batch.ok else EXIT_INVALID


def _load_single(path: Path):
    """The one valid definition in `path`, or an error message."""
    from ossabus.registry.catalog import documents_from_paths, validate_batch

    docs, unreadable = documents_from_paths([path])
    batch = validate_batch(docs, unreadable=unreadable)
    if not batch.ok:
        return None, "\n".join(d.render() for d in batch.diagnostics if d.severity == "error")
    if len(batch.entries) != 1:
        return None, f"{path} holds {len(batch.entries)} manifests; convert one at a time"
    return batch.entries[0], None


def _read_assistant(path: Path) -> tuple[dict | None, str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path}: no such file"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path}: not a JSON file ({exc})"
    if not isinstance(data, dict) or "apiVersion" in data:
        return None, f"{path}: not an OpenAI Assistant object"
    return data, None


def _import(path: Path, api_version: str = "ossa/v0.5") -> tuple[str | None, str | None]:
    from pydantic import ValidationError

    from ossabus.registry.catalog import validate_batch
    from ossabus.registry.convert_openai import IMPORT_API_VERSION, from_assistant
    from ossabus.registry.documents import parse_documents
    from ossabus.registry.migrate import migrate

    data, error = _read_assistant(path)
    if error:
        return None, error
    try:
        manifest = from_assistant(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        return (
            None,
            f"{path}: not a valid Assistant object: {'.'.join(map(str, first['loc']))}: {first['msg']}",
        )
    text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)
    if api_version != IMPORT_API_VERSION:
        (entry,) = validate_batch(parse_documents(text, str(path), "yaml")).entries
        if entry.definition is None:  # pragma: no cover - from_assistant writes valid manifests
            return None, f"{path}: the converted manifest is not valid"
        text = yaml.safe_dump(migrate(manifest, entry.definition, api_version).manifest, sort_keys=False)
    return text, None


def cmd_import_assistant(args: argparse.Namespace) -> int:
    text, error = _import(args.file, getattr(args, "api_version", None) or "ossa/v0.5")
    if error:
        return _fail(error, EXIT_INVALID)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _is_assistant_json(path: Path) -> bool:
    if path.suffix != ".json" or not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict) and "apiVersion" not in data and (data.get("object") == "assistant" or "model" in data)
    )


def cmd_convert(args: argparse.Namespace) -> int:
    """Input: an OSSA manifest or an OpenAI Assistant JSON object (told apart by `apiVersion`)."""
    import time

    from ossabus.registry.convert_openai import to_assistant
    from ossabus.registry.convert_vercel import to_vercel

    if _is_assistant_json(args.path):
        if args.to != "ossa":
            return _fail("an OpenAI Assistant object converts only --to ossa", EXIT_USAGE)
        return cmd_import_assistant(
            argparse.Namespace(file=args.path, output=None, api_version=args.api_version or "ossa/v0.5")
        )
    entry, error = _load_single(args.path)
    if error:
        return _fail(error, EXIT_INVALID)
    definition = entry.definition
    if args.to == "openai-assistant":
        out = to_assistant(definition, created_at=int(time.time())).model_dump(mode="json")
    elif args.to == "vercel-ai":
        out = to_vercel(definition)
    else:
        data = entry.document.data
        if args.api_version:
            from ossabus.registry.migrate import migrate

            migration = migrate(data, definition, args.api_version)
            data = migration.manifest
            for change in migration.changes:
                print(f"changed: {change}", file=sys.stderr)
            for doubt in migration.doubts:
                print(f"check: {doubt}", file=sys.stderr)
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        return EXIT_OK
    print(json.dumps(out, indent=2))
    return EXIT_OK


def cmd_contracts(args: argparse.Namespace) -> int:
    from ossabus.contracts.export import export_schemas

    if args.contracts_command == "asyncapi":
        from ossabus.contracts.asyncapi import render

        text = render(args.format)
        if args.output:
            args.output.write_text(text)
        else:
            sys.stdout.write(text)
        return EXIT_OK
    if args.contracts_command == "nats-auth":
        from ossabus.runtime.bus_auth import operator_config

        sys.stdout.write(operator_config())
        return EXIT_OK

    for path in export_schemas(args.dir):
        print(path)
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
