"""The Prometheus rules of deploy/prometheus/: promtool checks and unit
tests, and the conventions of a monitoring mixin (CamelCase alert names with
one prefix, severity, summary, description, a runbook_url that resolves)."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from deploy_helpers import (
    RULES_TEST_FILE,
    RUNBOOK_URL_BASE,
    alerting_rules,
    find_tool,
    recording_rules,
    rule_files,
    runbook_anchors,
)

SEVERITIES = {"critical", "warning", "info"}
REQUIRED_ALERTS = {
    "VpcFlowUnansweredRequests",
    "VpcFlowRepliesBlockedOutbound",
    "VpcFlowInboundRejectSpike",
    "VpcFlowRecordsSkipped",
    "VpcFlowExporterDown",
    "VpcFlowPollsFailing",
    "VpcFlowDeliveryDelayHigh",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = find_tool("promtool", "PROMTOOL", ("/usr/bin/promtool",))
    if not path:
        pytest.fail("promtool not found: install Debian's prometheus package or set PROMTOOL")
    return path


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_rule_files_exist():
    assert {p.name for p in rule_files()} == {"alerts.yml", "recording-rules.yml"}


def test_promtool_check_rules(promtool):
    result = run([promtool, "check", "rules", *map(str, rule_files())])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules(promtool):
    result = run([promtool, "test", "rules", str(RULES_TEST_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_required_alerts_present():
    names = [r["alert"] for r in alerting_rules()]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert REQUIRED_ALERTS <= set(names), sorted(REQUIRED_ALERTS - set(names))


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda r: r["alert"])
def test_alert_conventions(rule):
    assert re.fullmatch(r"VpcFlow(?:[A-Z][a-z0-9]+)+", rule["alert"]), "CamelCase, prefix VpcFlow"
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    url = annotations["runbook_url"]
    assert url.startswith(RUNBOOK_URL_BASE), url
    anchor = url[len(RUNBOOK_URL_BASE):]
    assert anchor == rule["alert"].lower(), "one runbook section per alert, named after it"
    assert anchor in runbook_anchors(), f"docs/runbook.md has no section #{anchor}"


def test_every_alert_has_a_firing_and_a_quiet_case():
    tests = yaml.safe_load(RULES_TEST_FILE.read_text(encoding="utf-8"))
    assert {"alerts.yml", "recording-rules.yml"} <= set(tests["rule_files"])
    firing, quiet = set(), set()
    for test in tests["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {r["alert"] for r in alerting_rules()}
    assert names - firing == set(), f"no firing case for {sorted(names - firing)}"
    assert names - quiet == set(), f"no not-firing case for {sorted(names - quiet)}"


def test_recording_rule_names():
    for rule in recording_rules():
        # level:metric:operations
        assert re.fullmatch(r"[a-z_]+:vpcflow_[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_recording_rules_are_tested():
    tests = yaml.safe_load(RULES_TEST_FILE.read_text(encoding="utf-8"))
    exprs = " ".join(
        case["expr"] for test in tests["tests"] for case in test.get("promql_expr_test", [])
    )
    assert any(r["record"] in exprs for r in recording_rules())


def test_runbook_internal_links_resolve():
    from deploy_helpers import RUNBOOK

    links = re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text(encoding="utf-8"))
    assert links
    missing = set(links) - runbook_anchors()
    assert not missing, sorted(missing)
