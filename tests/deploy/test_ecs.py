"""The ECS deployment: deploy/ecs/task-definition.json against the ECS API's
own RegisterTaskDefinition input shape (botocore's service model), and
deploy/ecs/service.cloudformation.yaml through cfn-lint and against the task
definition and IAM policy it must agree with."""

from __future__ import annotations

import json
import re
import subprocess

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator

from deploy_helpers import REPO, find_tool

TASK_DEFINITION = REPO / "deploy" / "ecs" / "task-definition.json"
TEMPLATE = REPO / "deploy" / "ecs" / "service.cloudformation.yaml"
IAM_POLICY = REPO / "deploy" / "iam-policy.json"
ENV_NAME = re.compile(r"VPC_FLOW_EXPORTER__[A-Z0-9_]+__[A-Z0-9_]+")


class CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation's short-form intrinsics as
    their long form ({"Fn::Sub": ...}, {"Ref": ...})."""


def _intrinsic(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def task_definition() -> dict:
    return json.loads(TASK_DEFINITION.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=CfnLoader)


def exporter_container(containers: list[dict], key: str = "name") -> dict:
    (c,) = [c for c in containers if c[key] == "vpc-flow-exporter"]
    return c


# ----------------------------------------------------------- task definition


def test_task_definition_matches_register_task_definition_shape(task_definition):
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(task_definition, shape)
    assert not report.has_errors(), report.generate_report()


def test_task_definition_is_fargate_awsvpc(task_definition):
    td = task_definition
    assert td["networkMode"] == "awsvpc"
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert td["taskRoleArn"].startswith("arn:aws:iam::")
    assert td["executionRoleArn"].startswith("arn:aws:iam::")
    c = exporter_container(td["containerDefinitions"])
    assert [p["containerPort"] for p in c["portMappings"]] == [9917]
    assert c["logConfiguration"]["logDriver"] == "awslogs"
    assert c["healthCheck"]["command"][0] == "CMD"
    assert "/healthz" in c["healthCheck"]["command"][-1]
    assert c.get("user") and not c["user"].startswith("0")


def test_task_definition_configures_through_environment(task_definition):
    env = {e["name"]: e["value"] for e in exporter_container(task_definition["containerDefinitions"])["environment"]}
    for name in env:
        assert ENV_NAME.fullmatch(name), f"{name}: not VPC_FLOW_EXPORTER__SECTION__KEY"
    assert env["VPC_FLOW_EXPORTER__SERVER__LISTEN_ADDRESS"].endswith(":9917")
    assert env["VPC_FLOW_EXPORTER__CLOUDWATCH__REGION"]
    assert env["VPC_FLOW_EXPORTER__CLOUDWATCH__LOG_GROUPS__0__NAME"]


STATE_DIRECTORY = "/var/lib/vpc-flow-exporter"


def test_task_definition_keeps_state_on_efs_and_logs_json(task_definition):
    """[state] on an EFS volume: a replaced task resumes where the old one
    stopped. JSON log lines for CloudWatch Logs (awslogs)."""
    c = exporter_container(task_definition["containerDefinitions"])
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert env["VPC_FLOW_EXPORTER__STATE__DIRECTORY"] == STATE_DIRECTORY
    (mount,) = c["mountPoints"]
    assert mount["containerPath"] == STATE_DIRECTORY and mount["readOnly"] is False
    (volume,) = [v for v in task_definition["volumes"] if v["name"] == mount["sourceVolume"]]
    assert volume["efsVolumeConfiguration"]["fileSystemId"].startswith("fs-")
    assert volume["efsVolumeConfiguration"]["transitEncryption"] == "ENABLED"
    assert c["command"][:3] == ["serve", "--config", "/etc/vpc-flow-exporter/config.toml"]
    assert c["command"][-2:] == ["--log.format", "json"]


# -------------------------------------------------------------- CloudFormation


def test_cfn_lint_passes():
    cfn_lint = find_tool("cfn-lint", "CFN_LINT")
    if not cfn_lint:
        pytest.fail("cfn-lint not found: pip install cfn-lint (into the test venv) or set CFN_LINT")
    # Informational findings too: the template should be clean at every level.
    result = subprocess.run(
        [cfn_lint, "--include-checks", "I", "--", str(TEMPLATE)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_parameters(template):
    params = template["Parameters"]
    for name in ["ClusterName", "SubnetIds", "VpcId", "Image", "FlowLogGroupName", "ScrapeCidr"]:
        assert name in params, name
    assert params["SubnetIds"]["Type"] == "List<AWS::EC2::Subnet::Id>"
    assert params["VpcId"]["Type"] == "AWS::EC2::VPC::Id"


def test_template_resources(template):
    types = {r["Type"] for r in template["Resources"].values()}
    assert {
        "AWS::IAM::Role", "AWS::Logs::LogGroup", "AWS::ECS::TaskDefinition",
        "AWS::ECS::Service", "AWS::EC2::SecurityGroup",
    } <= types
    (service,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::Service"]
    assert service["Properties"]["LaunchType"] == "FARGATE"
    (sg,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::EC2::SecurityGroup"]
    (rule,) = sg["Properties"]["SecurityGroupIngress"]
    assert (rule["FromPort"], rule["ToPort"]) == (9917, 9917)
    assert rule["CidrIp"] == {"Ref": "ScrapeCidr"}


def test_template_task_role_grants_exactly_the_policy(template):
    """The task role's inline policy is deploy/iam-policy.json with the
    placeholders filled in from the stack."""
    policy = json.loads(IAM_POLICY.read_text(encoding="utf-8"))
    task_def = next(r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition")
    role_name = task_def["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    role = template["Resources"][role_name]
    statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert sorted(a for s in statements for a in s["Action"]) == sorted(
        a for s in policy["Statement"] for a in s["Action"]
    )
    placeholders = {
        "arn:aws:": "arn:${AWS::Partition}:",
        "REGION": "${AWS::Region}",
        "ACCOUNT_ID": "${AWS::AccountId}",
        "LOG_GROUP_NAME": "${FlowLogGroupName}",
    }
    expected = []
    for s in policy["Statement"]:
        for arn in s["Resource"]:
            for k, v in placeholders.items():
                arn = arn.replace(k, v)
            expected.append(arn)
    # A plain string ("*", for EC2's Describe* actions) needs no Fn::Sub.
    got = [r["Fn::Sub"] if isinstance(r, dict) else r for s in statements for r in s["Resource"]]
    assert sorted(got) == sorted(expected)


def test_template_container_agrees_with_task_definition(template, task_definition):
    task_def = next(r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition")
    props = task_def["Properties"]
    assert props["NetworkMode"] == task_definition["networkMode"]
    assert props["RequiresCompatibilities"] == task_definition["requiresCompatibilities"]
    cfn = exporter_container(props["ContainerDefinitions"], key="Name")
    td = exporter_container(task_definition["containerDefinitions"])
    assert sorted(e["Name"] for e in cfn["Environment"]) == sorted(e["name"] for e in td["environment"])
    assert cfn["HealthCheck"]["Command"] == td["healthCheck"]["command"]
    assert [p["ContainerPort"] for p in cfn["PortMappings"]] == [p["containerPort"] for p in td["portMappings"]]
    assert cfn["LogConfiguration"]["LogDriver"] == "awslogs"
    assert cfn["User"] == td["user"]
    assert cfn["Command"] == td["command"]
    assert [m["ContainerPath"] for m in cfn["MountPoints"]] == [m["containerPath"] for m in td["mountPoints"]]
    (volume,) = props["Volumes"]
    assert volume["Name"] == cfn["MountPoints"][0]["SourceVolume"]
    assert volume["EFSVolumeConfiguration"]["TransitEncryption"] == "ENABLED"
