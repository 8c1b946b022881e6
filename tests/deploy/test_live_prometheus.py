"""The dashboards and rules, proven against a real Prometheus scraping the
real exporter.

Starts `vpc-flow-exporter serve --config examples/demo.toml` (files mode: the
bundled sample, replayed in a loop) on a free loopback port, and Debian's
Prometheus on another, scraping it every second and loading the rule files of
deploy/prometheus/. Then:

* every metric a dashboard or rule names is in the exporter's /metrics;
* every dashboard variable resolves to real values through Prometheus;
* every dashboard query, with its variables set to those values, and every
  rule expression runs without error, and the queries the sample feeds
  (sessions by verdict, records, bytes, packets) return series;
* Prometheus loads every rule group and evaluates every rule without error.

Builds nothing: the binary is target/debug/vpc-flow-exporter (under $CARGO_TARGET_DIR
when set; $EXPORTER_BIN overrides),
Prometheus /usr/bin/prometheus (or $PROMETHEUS). Queries on CloudWatch-only
metrics (API calls, delivery delay, read amplification) have no data in files
mode: they only have to run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pytest
import yaml

from deploy_helpers import (
    exporter_binary,
    PROMETHEUS_SERIES,
    REPO,
    dashboard_files,
    dashboard_queries,
    find_tool,
    free_port,
    label_values_query,
    load_dashboard,
    load_rules,
    recording_rules,
    referenced_names,
    rule_files,
    substitute,
    variable_query,
)

EXPORTER_BIN = exporter_binary()
DEMO_CONFIG = REPO / "examples" / "demo.toml"
JOB = "vpc-flow-exporter"  # the job VpcFlowExporterDown watches

# Panels the bundled sample must feed: (dashboard, panel title).
FED_PANELS = {
    ("overview.json", "Sessions by verdict"),
    ("overview.json", "Sessions by verdict and direction"),
    ("overview.json", "Bytes by verdict"),
    ("overview.json", "Packets by verdict"),
    ("overview.json", "Flow records read, by status"),
    ("overview.json", "Sessions per interface and verdict"),
    ("interface.json", "Sessions by verdict"),
    ("interface.json", "Bytes by verdict and direction"),
    ("interface.json", "Flow records read, by status"),
}

STARTUP_TIMEOUT = 30  # seconds until /healthz answers
READY_TIMEOUT = 120  # until /ready (first poll done) and the sample's sessions show
SCRAPES_WANTED = 5

# Loopback only: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Response:
    status: int
    text: str
    headers: object  # email.message.Message: case-insensitive get()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def http_get(url: str, params: dict | None = None, timeout: float = 5) -> Response:
    """GET without proxies; HTTP errors are returned, connection errors
    raised (OSError)."""
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with _OPENER.open(url, timeout=timeout) as r:
            return Response(r.status, r.read().decode("utf-8", "replace"), r.headers)
    except urllib.error.HTTPError as e:
        return Response(e.code, e.read().decode("utf-8", "replace"), e.headers)


class Process:
    """A child process whose output goes to a file, shown when it fails."""

    def __init__(self, name: str, cmd: list[str], log: Path, **kwargs):
        self.name, self.cmd, self.log = name, cmd, log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, **kwargs)

    def output(self, limit: int = 4000) -> str:
        self._out.flush()
        text = self.log.read_text(errors="replace")
        return text[-limit:]

    def check_running(self) -> None:
        code = self.proc.poll()
        if code is not None:
            pytest.fail(
                f"{self.name} exited with code {code}: {' '.join(self.cmd)}\n--- output ---\n{self.output()}"
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


def wait_for(what: str, check, timeout: float, process: Process, interval: float = 0.25):
    """Calls check() until it returns a true value; fails with the process's
    output if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        process.check_running()
        try:
            value = check()
            if value:
                return value
        except OSError as e:
            last_error = e
        time.sleep(interval)
    pytest.fail(
        f"timed out after {timeout}s waiting for {what}"
        + (f" (last error: {last_error})" if last_error else "")
        + f"\n--- {process.name} output ---\n{process.output()}"
    )


def exposition_names(text: str) -> set[str]:
    """Metric family and sample names of a Prometheus text exposition."""
    names = set()
    for line in text.splitlines():
        m = re.match(r"#\s+(?:TYPE|HELP)\s+([A-Za-z_:][\w:]*)", line)
        if m:
            names.add(m.group(1))
        elif line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][\w:]*", line).group(0))
    return names


def sample_sum(text: str, name: str) -> float:
    """Sum of the samples of one metric in a text exposition."""
    sample = re.compile(rf"^{re.escape(name)}(?:\{{.*\}})?\s+(\S+)")
    return sum(float(m.group(1)) for m in map(sample.match, text.splitlines()) if m)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def exporter(tmp_path_factory):
    """Base URL of a running exporter that has replayed the sample."""
    if not EXPORTER_BIN.is_file() or not os.access(EXPORTER_BIN, os.X_OK):
        pytest.fail(
            f"exporter binary not found at {EXPORTER_BIN}: run `cargo build` first, or set EXPORTER_BIN"
        )
    if not DEMO_CONFIG.is_file():
        pytest.fail(f"{DEMO_CONFIG.relative_to(REPO)} not found: the demo config (files mode) is missing")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true")
    proc = Process(
        "vpc-flow-exporter",
        [str(EXPORTER_BIN), "serve", "--config", str(DEMO_CONFIG), "--web.listen-address", f"127.0.0.1:{port}"],
        tmp_path_factory.mktemp("exporter") / "exporter.log",
        cwd=REPO,
        env=env,
    )
    try:
        wait_for("/healthz", lambda: http_get(f"{url}/healthz", timeout=2).ok, STARTUP_TIMEOUT, proc)
        wait_for("/ready (first poll done)", lambda: http_get(f"{url}/ready", timeout=2).ok, READY_TIMEOUT, proc)

        def sessions_counted():
            text = http_get(f"{url}/metrics", timeout=5).text
            return sample_sum(text, "vpcflow_sessions_total") > 0

        wait_for("the sample's sessions in /metrics", sessions_counted, READY_TIMEOUT, proc, interval=1)
        yield url, proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def prometheus(exporter, tmp_path_factory):
    """Base URL of a Prometheus that has scraped the exporter a few times and
    evaluated every rule."""
    binary = find_tool("prometheus", "PROMETHEUS", ("/usr/bin/prometheus",))
    if not binary:
        pytest.fail("prometheus not found: install Debian's prometheus package or set PROMETHEUS")
    exporter_url, _ = exporter
    workdir = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files()],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [exporter_url.removeprefix("http://")]}]}
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Process(
        "prometheus",
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        workdir / "prometheus.log",
        cwd=workdir,
    )
    try:
        wait_for("Prometheus ready", lambda: http_get(f"{url}/-/ready", timeout=2).ok, 30, proc)

        def scraped():
            result = query(url, f'count_over_time(up{{job="{JOB}"}}[1m]) >= {SCRAPES_WANTED} and up{{job="{JOB}"}} == 1')
            return bool(result)

        wait_for(f"{SCRAPES_WANTED} successful scrapes of the exporter", scraped, 60, proc, interval=1)

        def rules_evaluated():
            groups = api(url, "/api/v1/rules")["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules)

        wait_for("every rule evaluated", rules_evaluated, 30, proc, interval=1)
        yield url
    finally:
        proc.stop()


# ------------------------------------------------------------------- helpers


def api(url: str, path: str, **params) -> dict:
    r = http_get(f"{url}{path}", params, timeout=30)
    body = json.loads(r.text)
    if body.get("status") != "success":
        raise QueryError(body.get("error") or r.text)
    return body["data"]


class QueryError(Exception):
    pass


def query(url: str, expr: str) -> list:
    return api(url, "/api/v1/query", query=expr)["result"]


def query_range(url: str, expr: str, seconds: int = 60) -> list:
    end = time.time()
    return api(url, "/api/v1/query_range", query=expr, start=end - seconds, end=end, step=5)["result"]


# Labels of vpcflow_interface_info that the files source (this test's
# exporter) leaves empty.
EMPTY_OUTSIDE_AWS = {"account_id", "region"}


def resolve_variables(url: str, dashboard: dict) -> dict[str, str]:
    """A real value for every variable, found the way Grafana finds them:
    by running the variables' label_values queries, in order."""
    values: dict[str, str] = {}
    with_sessions = {s.get("interface_id") for s in query(url, "vpcflow_sessions_total")}
    for v in dashboard["templating"]["list"]:
        if v["type"] == "datasource":
            continue
        if v["type"] != "query":
            values[v["name"]] = str(v.get("current", {}).get("value", ""))
            continue
        selector, label = label_values_query(substitute(variable_query(v), values))
        if selector:
            now = time.time()
            series = api(url, "/api/v1/series", **{"match[]": selector, "start": now - 300, "end": now})
            found = sorted({s[label] for s in series if label in s})
        else:
            found = sorted(api(url, f"/api/v1/label/{label}/values"))
        if not found and label in EMPTY_OUTSIDE_AWS and v.get("includeAll"):
            # The files source knows no account or region: Grafana offers
            # "All" alone, which matches series without the label.
            values[v["name"]] = v["allValue"]
            continue
        assert found, f"variable ${v['name']}: {variable_query(v)!r} finds no values"
        # Prefer an interface that has sessions, so the drill-down has data.
        preferred = [f for f in found if label != "interface_id" or f in with_sessions]
        values[v["name"]] = (preferred or found)[0]
    return values


# --------------------------------------------------------------------- tests


def test_exporter_endpoints(exporter):
    url, _ = exporter
    assert http_get(f"{url}/healthz", timeout=5).status == 200
    assert http_get(f"{url}/ready", timeout=5).status == 200
    r = http_get(f"{url}/metrics", timeout=5)
    assert r.status == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain")


# Labelled CloudWatch-only families: the Rust client serves a family only once
# it has a label set, and in files mode no API operation ever gets one (nor
# does any checkpoint without [state]). They may be missing from /metrics
# here, but must still be registered by name in src/metrics.rs (which
# catches a misspelt name all the same).
CLOUDWATCH_ONLY = {
    "vpcflow_api_calls_total",
    "vpcflow_api_throttles_total",
    "vpcflow_state_checkpoints_total",
    "vpcflow_api_budget_demand_ratio",
}
# Labelled families that get a label set only when something goes wrong
# (the sample data never fills max_open_sessions); the same rule holds.
ONLY_WHEN_IT_HAPPENS = {"vpcflow_sessions_evicted_total"}
# The S3 source's families: registered only in [s3] mode (the dashboards'
# S3 row and alerts name them); here, in files mode, checked by name.
S3_ONLY = {
    "vpcflow_s3_objects_total",
    "vpcflow_sqs_messages_total",
    "vpcflow_s3_object_delay_seconds",
    "vpcflow_s3_object_bytes_read_total",
    "vpcflow_s3_object_records_read_total",
}


def family_of(name: str) -> str:
    """A histogram's series name (`_bucket`, `_sum`, `_count`) as its family's."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in S3_ONLY:
            return name.removesuffix(suffix)
    return name


def registered_in_source(name: str) -> bool:
    source = (REPO / "src" / "metrics.rs").read_text(encoding="utf-8")
    return f'"{family_of(name).removeprefix("vpcflow_")}"' in source


def test_every_referenced_metric_is_served(exporter):
    url, _ = exporter
    served = exposition_names(http_get(f"{url}/metrics", timeout=5).text)
    recorded = {r["record"] for r in recording_rules()}
    missing = {
        name: sorted(where)
        for name, where in referenced_names().items()
        if name not in PROMETHEUS_SERIES
        and name not in recorded
        and name not in served
        and not (
            family_of(name) in CLOUDWATCH_ONLY | ONLY_WHEN_IT_HAPPENS | S3_ONLY
            and registered_in_source(name)
        )
    }
    assert not missing, f"named by dashboards or rules but not in /metrics: {missing}"


def test_prometheus_scrapes_the_exporter(prometheus):
    (target,) = [t for t in api(prometheus, "/api/v1/targets")["activeTargets"] if t["labels"]["job"] == JOB]
    assert target["health"] == "up", target.get("lastError")


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.name)
def test_dashboard_queries_run(prometheus, path):
    dashboard = load_dashboard(path)
    values = resolve_variables(prometheus, dashboard)
    failures, empty = [], []
    for panel, target in dashboard_queries(dashboard):
        expr = substitute(target["expr"], values)
        where = f"{panel['title']} [{target['refId']}]: {expr}"
        try:
            result = query(prometheus, expr)
            if target.get("range", True) and not target.get("instant"):
                query_range(prometheus, expr)
        except QueryError as e:
            failures.append(f"{where}\n    {e}")
            continue
        if (path.name, panel["title"]) in FED_PANELS and not result:
            empty.append(where)
    assert not failures, "queries failed:\n" + "\n".join(failures)
    assert not empty, f"no data (variables {values}) for:\n" + "\n".join(empty)


def test_every_fed_panel_exists():
    titles = {
        (p.name, panel["title"]) for p in dashboard_files() for panel, _ in dashboard_queries(load_dashboard(p))
    }
    assert FED_PANELS <= titles, sorted(FED_PANELS - titles)


def test_rule_expressions_run(prometheus):
    failures = []
    for rule in load_rules():
        try:
            query(prometheus, rule["expr"])
        except QueryError as e:
            failures.append(f"{rule.get('alert') or rule.get('record')}: {e}")
    assert not failures, "\n".join(failures)


def test_prometheus_loads_and_evaluates_every_rule(prometheus):
    groups = api(prometheus, "/api/v1/rules")["groups"]
    loaded = {r["name"] for g in groups for r in g["rules"]}
    expected = {r.get("alert") or r.get("record") for r in load_rules()}
    assert expected <= loaded, sorted(expected - loaded)
    broken = [f"{r['name']}: {r.get('lastError')}" for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not broken, "\n".join(broken)


def test_recording_rules_record_the_sample(prometheus):
    """The sample feeds the session and record recording rules."""
    for name in [
        "interface_verdict:vpcflow_sessions:rate5m",
        "interface_verdict:vpcflow_bytes:rate5m",
        "interface_log_status:vpcflow_records:rate5m",
    ]:
        assert query(prometheus, name), f"{name} recorded nothing"


def test_exporter_is_not_reported_down(prometheus):
    alerts = api(prometheus, "/api/v1/alerts")["alerts"]
    assert not [a for a in alerts if a["labels"]["alertname"] in ("VpcFlowExporterDown", "VpcFlowPollsFailing")]
