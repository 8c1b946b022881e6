"""deploy/iam-policy-s3.json grants exactly the S3 and SQS operations the S3
source calls, derived from the code as deploy/iam-policy.json is for
CloudWatch Logs: every aws-sdk-s3 / aws-sdk-sqs fluent call
(`self.sqs.receive_message()`) in src/source/s3/ is an operation of
botocore's `s3` or `sqs` service model, and maps to its IAM action
(ListObjectsV2 is authorised as s3:ListBucket). deploy/s3/notifications.cloudformation.yaml
(the queue, its dead-letter queue and the bucket notification) passes
cfn-lint and wires what the exporter expects."""

from __future__ import annotations

import json
import re
import subprocess
from functools import lru_cache

import botocore.session
import pytest
import yaml
from botocore import xform_name

from deploy_helpers import REPO, find_tool
from test_ecs import CfnLoader
from test_iam_policy import strip_comments

POLICY = REPO / "deploy" / "iam-policy-s3.json"
TEMPLATE = REPO / "deploy" / "s3" / "notifications.cloudformation.yaml"
S3_SOURCE = REPO / "src" / "source" / "s3"
# Operations whose IAM action is not named after them.
IAM_ACTION = {("s3", "ListObjectsV2"): "s3:ListBucket"}


@lru_cache(maxsize=None)
def operations(service: str) -> dict[str, str]:
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def actions_called() -> dict[str, set[str]]:
    """IAM action -> files of src/source/s3/ calling its operation."""
    call = re.compile(r"\.\s*(s3|sqs)\s*\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)")
    found: dict[str, set[str]] = {}
    for path in sorted(S3_SOURCE.rglob("*.rs")):
        code = strip_comments(path.read_text(encoding="utf-8"))
        for m in call.finditer(code):
            service, method = m.groups()
            op = operations(service).get(method)
            if op:
                action = IAM_ACTION.get((service, op), f"{service}:{op}")
                found.setdefault(action, set()).add(path.name)
    return found


def policy() -> dict:
    return json.loads(POLICY.read_text(encoding="utf-8"))


def test_policy_grants_exactly_what_the_s3_source_calls():
    called = actions_called()
    assert {"s3:GetObject", "sqs:ReceiveMessage", "sqs:DeleteMessage"} <= set(called), called
    granted = {a for s in policy()["Statement"] for a in s["Action"]}
    assert granted == set(called), f"code calls {sorted(called.items())}"


def test_policy_is_least_privilege():
    doc = policy()
    assert doc["Version"] == "2012-10-17"
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow"
        for resource in statement["Resource"]:
            assert "*" not in resource.split(":::")[0], resource
        for action in statement["Action"]:
            if action == "s3:GetObject":
                assert statement["Resource"] == ["arn:aws:s3:::BUCKET_NAME/AWSLogs/*"]
            elif action == "s3:ListBucket":
                assert statement["Condition"]["StringLike"]["s3:prefix"] == ["AWSLogs/*"]
            else:
                assert statement["Resource"] == ["arn:aws:sqs:REGION:ACCOUNT_ID:QUEUE_NAME"]


def test_template_passes_cfn_lint():
    cfn_lint = find_tool("cfn-lint", "CFN_LINT")
    if not cfn_lint:
        pytest.fail("cfn-lint not found: pip install cfn-lint (into the test venv) or set CFN_LINT")
    result = subprocess.run(
        [cfn_lint, "--include-checks", "I", "--", str(TEMPLATE)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_notifies_the_queue_with_a_dead_letter_queue():
    template = yaml.load(TEMPLATE.read_text(encoding="utf-8"), Loader=CfnLoader)
    resources = template["Resources"]
    queue = resources["FlowLogQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    # The exporter remembers counted objects for 14 days: no longer retention.
    assert queue["MessageRetentionPeriod"] <= 1209600
    (bucket,) = [r for r in resources.values() if r["Type"] == "AWS::S3::Bucket"]
    (config,) = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Event"] == "s3:ObjectCreated:*"
    assert config["Queue"] == {"Fn::GetAtt": ["FlowLogQueue", "Arn"]}
    assert template["Outputs"]["QueueUrl"]["Value"] == {"Ref": "FlowLogQueue"}
