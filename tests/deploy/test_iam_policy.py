"""deploy/iam-policy.json grants exactly the AWS operations the exporter
calls, derived from the code so that the two cannot drift: every SDK fluent
call (`client.filter_log_events()`) in src/ is an operation of botocore's
`logs` service model, and each maps to the IAM action logs:<OperationName>;
in src/source/ec2/ the same for the `ec2` model and ec2:<OperationName>."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import botocore.session
from botocore import xform_name

from deploy_helpers import REPO, documented_api_operations

IAM_POLICY = REPO / "deploy" / "iam-policy.json"
SRC = REPO / "src"
ARN = re.compile(r"arn:aws:logs:REGION:ACCOUNT_ID:log-group:LOG_GROUP_NAME(:\*)?")


@lru_cache(maxsize=None)
def service_operations(service: str) -> dict[str, str]:
    """snake_case method name -> API operation name of a botocore service."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def logs_operations() -> dict[str, str]:
    return service_operations("logs")


def strip_comments(rust: str) -> str:
    rust = re.sub(r"/\*.*?\*/", " ", rust, flags=re.S)
    return re.sub(r"//[^\n]*", " ", rust)


def operations_called(src: Path, service: str = "logs") -> dict[str, set[str]]:
    """CloudWatch Logs operation -> files calling it. An SDK call is a
    method named after an operation and called with no arguments, the
    start of a fluent builder: `client.filter_log_events().log_group_name(..)`.
    Our own wrappers that take arguments (`api.filter_log_events(query)`)
    are not SDK calls."""
    ops = service_operations(service)
    call = re.compile(r"\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)")
    found: dict[str, set[str]] = {}
    for path in sorted(src.rglob("*.rs")):
        code = strip_comments(path.read_text(encoding="utf-8"))
        for m in call.finditer(code):
            if m.group(1) in ops:
                found.setdefault(ops[m.group(1)], set()).add(str(path.relative_to(src)))
    return found


def policy() -> dict:
    return json.loads(IAM_POLICY.read_text(encoding="utf-8"))


def policy_actions(prefix: str = "logs:") -> set[str]:
    return {a for s in policy()["Statement"] for a in s["Action"] if a.startswith(prefix)}


EC2_SRC = SRC / "source" / "ec2"


def test_scanner_finds_fluent_calls_only(tmp_path):
    (tmp_path / "source" / "cloudwatch").mkdir(parents=True)
    (tmp_path / "source" / "cloudwatch" / "client.rs").write_text(
        """
        //! Calls `.get_log_events()` never: this comment must not count.
        use aws_sdk_cloudwatchlogs::operation::filter_log_events::FilterLogEventsError;
        async fn page(client: &aws_sdk_cloudwatchlogs::Client) {
            let out = client
                .filter_log_events()
                .log_group_name("g")
                .send()
                .await;
            /* client.delete_log_group() */
            let streams = self.client.describe_log_streams().log_group_name("g").send().await;
            let name = "put_log_events()";
        }
        """
    )
    (tmp_path / "source" / "memory.rs").write_text(
        """
        impl LogsApi for Memory {
            fn filter_log_events(&self, query: Query) -> Page { self.inner.filter_log_events(query) }
            fn len(&self) -> usize { self.events.len() }
        }
        """
    )
    assert set(operations_called(tmp_path)) == {"FilterLogEvents", "DescribeLogStreams"}


def test_policy_grants_exactly_the_operations_the_code_calls():
    called = operations_called(SRC)
    assert called, (
        "no aws-sdk-cloudwatchlogs call (client.filter_log_events() ...) found in src/: "
        "the CloudWatch source is not written yet, or the scanner misses its calls"
    )
    expected = {f"logs:{op}" for op in called}
    assert policy_actions() == expected, f"code calls {sorted(called.items())}"


def test_policy_grants_exactly_the_ec2_operations_the_code_calls():
    called = operations_called(EC2_SRC, "ec2")
    assert called == {"DescribeNetworkInterfaces": {"aws.rs"}}, called
    assert policy_actions("ec2:") == {f"ec2:{op}" for op in called}
    every = {a for s in policy()["Statement"] for a in s["Action"]}
    assert every == policy_actions("logs:") | policy_actions("ec2:")


def test_policy_matches_the_documented_api_operations():
    documented = documented_api_operations()
    assert documented, "docs/metrics.md lists no operation values"
    granted = policy_actions("logs:") | policy_actions("ec2:")
    assert {a.split(":")[1] for a in granted} == documented


def test_policy_is_least_privilege():
    doc = policy()
    assert doc["Version"] == "2012-10-17"
    logs = [s for s in doc["Statement"] if all(a.startswith("logs:") for a in s["Action"])]
    ec2 = [s for s in doc["Statement"] if s not in logs]
    # EC2's Describe* actions take no resource-level permissions: "*" is
    # the only resource they accept, and they only read.
    for statement in ec2:
        assert statement["Effect"] == "Allow"
        assert statement["Action"] == ["ec2:DescribeNetworkInterfaces"]
        assert statement["Resource"] == ["*"]
    for statement in logs:
        assert statement["Effect"] == "Allow"
        assert all(re.fullmatch(r"logs:[A-Z][A-Za-z]+", a) for a in statement["Action"])
        assert "*" not in statement["Resource"]
        # Both operations are authorised on the log-group resource type; the
        # ":*" form is the ARN the Logs API itself reports for a group.
        for arn in statement["Resource"]:
            assert ARN.fullmatch(arn), arn
        assert {bool(ARN.fullmatch(a).group(1)) for a in statement["Resource"]} == {False, True}
