"""The configurations the deployment files give the exporter are accepted by
the exporter itself (`serve --check-config`): the Kubernetes ConfigMap's
config.toml, and the image's minimal config.toml completed by the ECS task
definition's VPC_FLOW_EXPORTER__… environment variables. Needs the binary
(target/debug/vpc-flow-exporter or $EXPORTER_BIN), like the live test."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy_helpers import REPO, exporter_binary

EXPORTER_BIN = exporter_binary()


@pytest.fixture(scope="module")
def exporter_bin() -> Path:
    if not EXPORTER_BIN.is_file() or not os.access(EXPORTER_BIN, os.X_OK):
        pytest.fail(
            f"exporter binary not found at {EXPORTER_BIN}: run `cargo build` first, or set EXPORTER_BIN"
        )
    return EXPORTER_BIN


def check_config(binary: Path, config: Path, extra_env: dict[str, str] | None = None):
    # Only the variables given here may configure the exporter.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VPC_FLOW_EXPORTER__")}
    env.update(AWS_EC2_METADATA_DISABLED="true", **(extra_env or {}))
    result = subprocess.run(
        [str(binary), "serve", "--config", str(config), "--check-config"],
        capture_output=True, text=True, timeout=30, env=env, cwd=REPO,
    )
    assert result.returncode == 0, (
        f"--check-config rejected {config.name} (env {sorted(extra_env or {})}):\n{result.stdout}{result.stderr}"
    )


def test_kubernetes_config_map_is_accepted(exporter_bin, tmp_path):
    configmap = yaml.safe_load((REPO / "deploy/kubernetes/configmap.yaml").read_text())
    config = tmp_path / "config.toml"
    config.write_text(configmap["data"]["config.toml"])
    check_config(exporter_bin, config)


def test_container_config_with_ecs_environment_is_accepted(exporter_bin):
    td = json.loads((REPO / "deploy/ecs/task-definition.json").read_text())
    (container,) = td["containerDefinitions"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    check_config(exporter_bin, REPO / "deploy/container-config.toml", env)
