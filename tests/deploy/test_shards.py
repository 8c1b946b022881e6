"""The examples for replicas that split the work (README "Scaling out"):
the Kubernetes StatefulSet (deploy/kubernetes/sharded/), one ECS service per
shard (deploy/ecs/service.cloudformation.yaml's ShardIndex/ShardCount), and
the S3 notification filters that give each [s3] replica its own queue
(deploy/s3/sharded-notifications.cloudformation.yaml). Read statically,
configs checked by the exporter itself, templates by cfn-lint."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy_helpers import REPO, exporter_binary, find_tool
from test_ecs import CfnLoader

SHARDED = REPO / "deploy" / "kubernetes" / "sharded"
S3_TEMPLATE = REPO / "deploy" / "s3" / "sharded-notifications.cloudformation.yaml"
ECS_TEMPLATE = REPO / "deploy" / "ecs" / "service.cloudformation.yaml"


def manifests() -> dict[str, dict]:
    out = {}
    for path in SHARDED.glob("*.yaml"):
        if path.name != "kustomization.yaml":
            out[yaml.safe_load(path.read_text(encoding="utf-8"))["kind"]] = yaml.safe_load(
                path.read_text(encoding="utf-8")
            )
    return out


def check_config(config: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    binary = exporter_binary()
    if not binary.is_file():
        pytest.fail(f"exporter binary not found at {binary}: run `cargo build` first, or set EXPORTER_BIN")
    path = tmp_path / "config.toml"
    path.write_text(config)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VPC_FLOW_EXPORTER__") and k != "HOSTNAME"}
    clean.update(AWS_EC2_METADATA_DISABLED="true", **env)
    return subprocess.run(
        [str(binary), "serve", "--config", str(path), "--check-config"],
        capture_output=True, text=True, timeout=30, env=clean, cwd=REPO,
    )


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((SHARDED / "kustomization.yaml").read_text(encoding="utf-8"))
    assert set(kustomization["resources"]) == {p.name for p in SHARDED.glob("*.yaml")} - {"kustomization.yaml"}


def test_statefulset_count_equals_replicas_and_index_is_the_ordinal():
    m = manifests()
    sts = m["StatefulSet"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["VPC_FLOW_EXPORTER__SHARD__COUNT"]) == sts["spec"]["replicas"]
    assert 'index = "from-hostname"' in m["ConfigMap"]["data"]["config.toml"]
    assert sts["spec"]["serviceName"] == m["Service"]["metadata"]["name"]
    assert m["Service"]["spec"]["clusterIP"] == "None"
    assert m["ServiceMonitor"]["spec"]["selector"]["matchLabels"] == m["Service"]["metadata"]["labels"]


def test_every_pod_of_the_statefulset_gets_a_valid_shard(tmp_path):
    m = manifests()
    sts = m["StatefulSet"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    config = m["ConfigMap"]["data"]["config.toml"]
    name = sts["metadata"]["name"]
    for ordinal in range(sts["spec"]["replicas"]):
        result = check_config(config, {**env, "HOSTNAME": f"{name}-{ordinal}"}, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    # One past the last ordinal is not a shard: the config says so.
    result = check_config(config, {**env, "HOSTNAME": f"{name}-{sts['spec']['replicas']}"}, tmp_path)
    assert result.returncode != 0
    assert "shard.index: must be below shard.count" in result.stderr


def test_ecs_stack_per_shard_sets_index_and_count():
    template = yaml.load(ECS_TEMPLATE.read_text(encoding="utf-8"), Loader=CfnLoader)
    assert {"ShardIndex", "ShardCount"} <= set(template["Parameters"])
    task_def = next(r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition")
    (container,) = task_def["Properties"]["ContainerDefinitions"]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["VPC_FLOW_EXPORTER__SHARD__INDEX"] == {"Ref": "ShardIndex"}
    assert env["VPC_FLOW_EXPORTER__SHARD__COUNT"] == {"Ref": "ShardCount"}


def test_s3_template_passes_cfn_lint():
    cfn_lint = find_tool("cfn-lint", "CFN_LINT")
    if not cfn_lint:
        pytest.fail("cfn-lint not found: pip install cfn-lint (into the test venv) or set CFN_LINT")
    result = subprocess.run(
        [cfn_lint, "--include-checks", "I", "--", str(S3_TEMPLATE)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_s3_each_replica_queue_gets_its_own_flow_log_prefixes():
    template = yaml.load(S3_TEMPLATE.read_text(encoding="utf-8"), Loader=CfnLoader)
    queues = [name for name, r in template["Resources"].items() if r["Type"] == "AWS::SQS::Queue"]
    (bucket,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::S3::Bucket"]
    configs = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    by_queue: dict[str, list[str]] = {}
    for config in configs:
        (queue, _) = config["Queue"]["Fn::GetAtt"]
        (rule,) = config["Filter"]["S3Key"]["Rules"]
        assert rule["Name"] == "prefix"
        parameter = template["Parameters"][rule["Value"]["Ref"]]
        assert re.fullmatch(r"AWSLogs/\d{12}/vpcflowlogs/[a-z0-9-]+/", parameter["Default"])
        by_queue.setdefault(queue, []).append(parameter["Default"])
    assert sorted(by_queue) == sorted(queues), "every replica's queue is notified"
    prefixes = [p for ps in by_queue.values() for p in ps]
    assert len(prefixes) == len(set(prefixes)), "no prefix goes to two queues"
    outputs = template["Outputs"]
    for queue in queues:
        assert any(o["Value"] == {"Ref": queue} for o in outputs.values()), f"{queue}'s URL is an output"
