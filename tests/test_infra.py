"""infra/: every file parses, passes the schema checker of its kind, and agrees with the code."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from ossabus.cli import SERVICE_NAMES, build_parser
from ossabus.contracts import subjects
from ossabus.runtime.nats_server import find_nats_server

from conftest import REPO
from tls_certs import make_certificates

INFRA = REPO / "infra"
YAML_FILES = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))
K8S = sorted((INFRA / "k8s").glob("*.yaml"))
KUBERNETES_VERSION = "1.33.0"


def documents(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def test_there_is_infra_to_check():
    assert len(YAML_FILES) >= 10
    assert (INFRA / "docker" / "Dockerfile").exists()


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_yaml_file_parses(path):
    assert documents(path)


SERVER_CONFS = sorted(p for p in (INFRA / "nats").rglob("*.conf") if p.name not in ("auth.conf", "tls.conf"))


@pytest.fixture(scope="module")
def nats_secrets(tmp_path_factory) -> dict[str, str]:
    """What an operator puts in nats-server's environment: the users' passwords and the TLS files."""
    from ossabus.runtime.bus_auth import PASSWORD_VARIABLES

    certificates = make_certificates(tmp_path_factory.mktemp("tls"))
    return {**certificates.env(), **{name: f"pw-{name.lower()}" for name in PASSWORD_VARIABLES.values()}}


@pytest.mark.parametrize("path", SERVER_CONFS, ids=lambda p: p.name)
def test_nats_configurations_are_valid_locked_and_refuse_to_start_without_secrets(path, nats_secrets):
    binary = find_nats_server()
    assert binary is not None
    base = {k: v for k, v in os.environ.items() if k not in nats_secrets}
    checked = subprocess.run(
        [str(binary), "-c", str(path), "-t"], capture_output=True, text=True, check=False, env={**base, **nats_secrets}
    )
    assert checked.returncode == 0, checked.stderr
    assert "is valid" in checked.stdout + checked.stderr
    text = path.read_text()
    assert "max_payload: 8MB" in text
    assert "auth.conf" in text
    assert "tls.conf" in text
    if "cluster {" in text:
        assert "verify: true" in text  # routes authenticate with certificates
    missing = subprocess.run(
        [str(binary), "-c", str(path), "-t"], capture_output=True, text=True, env=base, check=False
    )
    assert missing.returncode != 0  # no default secret: an unset password stops the server


def test_the_nats_users_for_operators_match_the_code():
    from ossabus.runtime.bus_auth import operator_config

    assert (INFRA / "nats" / "auth.conf").read_text() == operator_config()


def test_the_compose_file_follows_the_compose_specification():
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(INFRA / "compose.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _ossabus_commands():
    compose = documents(INFRA / "compose.yaml")[0]
    for name, service in compose["services"].items():
        if isinstance(service.get("command"), list) and service["command"][0] == "serve":
            yield f"compose:{name}", service["command"]
    for path in K8S:
        for doc in documents(path):
            if doc.get("kind") == "Deployment":
                container = doc["spec"]["template"]["spec"]["containers"][0]
                yield f"k8s:{doc['metadata']['name']}", container["args"]
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    cmd = next(line for line in dockerfile.splitlines() if line.startswith("CMD "))
    yield "dockerfile", yaml.safe_load(cmd[4:])


@pytest.mark.parametrize(("where", "args"), list(_ossabus_commands()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_line_is_one_ossabus_accepts(where, args):
    parsed = build_parser().parse_args(args)
    assert parsed.command == "serve", where


def test_every_service_is_deployed_everywhere():
    compose = {args[1] for where, args in _ossabus_commands() if where.startswith("compose:")}
    k8s = {args[1] for where, args in _ossabus_commands() if where.startswith("k8s:")}
    assert compose == k8s == set(SERVICE_NAMES)


@pytest.mark.parametrize("path", K8S, ids=lambda p: p.name)
def test_kubernetes_manifests_pass_the_kubernetes_schemas(path):
    for doc in documents(path):
        if "kind" not in doc or doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD, or Helm values: checked below
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_keda_scaler_watches_the_executors_consumer():
    scaled = documents(INFRA / "k8s" / "keda-scaledobject.yaml")[0]
    executors = documents(INFRA / "k8s" / "executor.yaml")[0]
    assert scaled["spec"]["scaleTargetRef"]["name"] == executors["metadata"]["name"]
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "nats-jetstream"
    assert (trigger["metadata"]["stream"], trigger["metadata"]["consumer"]) == (
        subjects.TASKS_STREAM,
        subjects.EXECUTOR_CONSUMER,
    )


def test_relay_probes_and_the_dockerfile_point_at_what_exists():
    relay = documents(INFRA / "k8s" / "relay.yaml")[0]["spec"]["template"]["spec"]["containers"][0]
    assert (relay["readinessProbe"]["httpGet"]["path"], relay["livenessProbe"]["httpGet"]["path"]) == (
        "/readyz",
        "/healthz",
    )
    for line in (INFRA / "docker" / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (REPO / source).exists(), source


def test_no_default_secrets_and_no_nats_port_on_the_host():
    compose = documents(INFRA / "compose.yaml")[0]
    assert "ports" not in compose["services"]["nats"]  # 4222 and 8222 stay on the containers' network
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:") or name == "relay", (name, port)
    text = (INFRA / "compose.yaml").read_text()
    for variable in ("OSSABUS_API_KEYS", "NATS_OSSABUS_PASSWORD", "NATS_CLIENT_PASSWORD", "NATS_WORKER_PASSWORD"):
        assert f"${{{variable}:?" in text  # compose refuses to start without it
    assert "tls://ossabus:" in text
    kinds = [doc.get("kind") for path in K8S for doc in documents(path)]
    assert "Secret" not in kinds  # created from the operator's secret store, never shipped
    assert "change-me" not in "".join(p.read_text() for p in K8S)
    values = documents(INFRA / "k8s" / "nats-values.yaml")[0]
    assert values["config"]["nats"]["tls"]["enabled"] is True
    assert values["config"]["cluster"]["tls"]["merge"]["verify"] is True


def test_the_helm_values_carry_the_same_permission_matrix():
    from ossabus.runtime.bus_auth import permissions

    users = documents(INFRA / "k8s" / "nats-values.yaml")[0]["config"]["merge"]["authorization"]["users"]
    assert {u["user"]: u["permissions"] for u in users} == permissions()
