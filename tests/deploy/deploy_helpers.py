"""Shared helpers of the tests in tests/deploy/: where the files are, how to
read dashboards, rules and docs/metrics.md, and a small PromQL metric-name
extractor. Imported by the test modules beside it (pytest puts this folder on
sys.path)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import Iterator

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "dashboards"
RULES_DIR = REPO / "deploy" / "prometheus"
RULES_TEST_FILE = RULES_DIR / "alerts_test.yml"
METRICS_DOC = REPO / "docs" / "metrics.md"
RUNBOOK = REPO / "docs" / "runbook.md"
RUNBOOK_URL_BASE = (
    "https://github.com/vpc-flow-exporter/vpc-flow-exporter/blob/main/docs/runbook.md#"
)

# Series Prometheus makes itself: dashboards and rules may name them although
# the exporter does not serve them.
PROMETHEUS_SERIES = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
    "ALERTS",
    "ALERTS_FOR_STATE",
}

# Grafana's own variables, besides everything starting with "__".
GRAFANA_BUILTIN_VARIABLES = {"interval", "interval_ms", "timeFilter"}


# ------------------------------------------------------------------ files


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


def load_dashboard(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_queries(dashboard: dict) -> list[tuple[dict, dict]]:
    """(panel, target) for every Prometheus query of the dashboard."""
    return [
        (panel, target)
        for panel in iter_panels(dashboard.get("panels", []))
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def variable_query(variable: dict) -> str:
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query", "")
    return query or variable.get("definition", "")


def rule_files() -> list[Path]:
    """The rule files Prometheus loads: every .yml but the promtool tests."""
    return sorted(p for p in RULES_DIR.glob("*.yml") if not p.name.endswith("_test.yml"))


def load_rules() -> list[dict]:
    rules = []
    for path in rule_files():
        with path.open(encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for group in doc["groups"]:
            for rule in group["rules"]:
                rules.append(dict(rule, _group=group["name"], _file=path.name))
    return rules


def alerting_rules() -> list[dict]:
    return [r for r in load_rules() if "alert" in r]


def recording_rules() -> list[dict]:
    return [r for r in load_rules() if "record" in r]


def documented_metrics() -> dict[str, str]:
    """Metric name -> type, from the tables of docs/metrics.md."""
    metrics: dict[str, str] = {}
    row = re.compile(r"^\|\s*`(vpcflow_[a-z0-9_]+)`\s*\|\s*([a-z]+)\s*\|")
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        m = row.match(line)
        if m:
            metrics[m.group(1)] = m.group(2)
    return metrics


def documented_api_operations() -> set[str]:
    """The `operation` label values docs/metrics.md gives for API calls."""
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `vpcflow_api_calls_total`"):
            m = re.search(r"`operation`\s*\(([^)]*)\)", line)
            if m:
                return set(re.findall(r"`([A-Za-z]+)`", m.group(1)))
    return set()


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def runbook_anchors() -> set[str]:
    anchors = set()
    for line in RUNBOOK.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            anchors.add(github_anchor(m.group(1)))
    return anchors


# ------------------------------------------------------------------ PromQL

_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "offset", "bool", "inf", "nan", "atan2",
}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (a lexical approximation that
    is exact for the expressions we write: selectors, functions, aggregations
    with by/without, binary operators, offsets)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s
    )
    names = set()
    for m in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])", s):
        name = m.group(1)
        if re.match(r"\s*\(", s[m.end():]):
            continue  # a function or an aggregation
        if name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def label_values_query(query: str) -> tuple[str | None, str] | None:
    """label_values(SELECTOR, LABEL) or label_values(LABEL) -> (selector, label)."""
    m = re.fullmatch(r"\s*label_values\(\s*(?:(.+?)\s*,\s*)?([A-Za-z_]\w*)\s*\)\s*", query)
    if not m:
        return None
    return m.group(1), m.group(2)


def base_metric(name: str, documented: dict[str, str]) -> str | None:
    """The documented metric a series name belongs to (histogram and summary
    series carry a suffix), or None."""
    if name in documented:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and documented.get(base) in ("histogram", "summary"):
            return base
    return None


def referenced_names() -> dict[str, set[str]]:
    """Metric name -> where it is used, over dashboards (queries and
    variables) and rules."""
    where: dict[str, set[str]] = {}
    for path in dashboard_files():
        d = load_dashboard(path)
        for panel, target in dashboard_queries(d):
            for name in metric_names(target["expr"]):
                where.setdefault(name, set()).add(f"{path.name}: {panel['title']}")
        for v in d["templating"]["list"]:
            if v["type"] == "query":
                selector, _ = label_values_query(variable_query(v)) or (None, None)
                for name in metric_names(selector or ""):
                    where.setdefault(name, set()).add(f"{path.name}: ${v['name']}")
    for rule in load_rules():
        for name in metric_names(rule["expr"]):
            where.setdefault(name, set()).add(f"{rule['_file']}: {rule.get('alert') or rule.get('record')}")
    return where


# ------------------------------------------------------------- Grafana vars

_VARIABLE = re.compile(
    r"\$\{([A-Za-z_]\w*)(?:[.:][^}]*)?\}"  # ${name}, ${name:format}, ${name.field}
    r"|\$([A-Za-z_]\w*)"  # $name
    r"|\[\[([A-Za-z_]\w*)(?::[^\]]*)?\]\]"  # [[name]] (deprecated)
)


def variables_used(obj) -> set[str]:
    """Names of the Grafana variables referenced anywhere in a JSON value."""
    found: set[str] = set()
    if isinstance(obj, str):
        for m in _VARIABLE.finditer(obj):
            found.add(next(g for g in m.groups() if g))
    elif isinstance(obj, dict):
        for v in obj.values():
            found |= variables_used(v)
    elif isinstance(obj, list):
        for v in obj:
            found |= variables_used(v)
    return found


def is_grafana_builtin(name: str) -> bool:
    return name.startswith("__") or name in GRAFANA_BUILTIN_VARIABLES


GRAFANA_INTERVALS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
    "__interval_ms": "15000",
}


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replaces Grafana variables by values (builtin intervals included)."""
    table = dict(GRAFANA_INTERVALS, **values)

    def repl(m: re.Match) -> str:
        name = next(g for g in m.groups() if g)
        if name not in table:
            raise KeyError(f"no value for variable ${name} in {expr!r}")
        return table[name]

    return _VARIABLE.sub(repl, expr)


# ------------------------------------------------------------------- tools


def find_tool(name: str, env: str, fallbacks: tuple[str, ...] = ()) -> str | None:
    """A program from the env variable, the venv's bin/, PATH or fallbacks."""
    if os.environ.get(env):
        return os.environ[env]
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found:
        return found
    for path in fallbacks:
        if os.access(path, os.X_OK):
            return path
    return None


def exporter_binary() -> Path:
    """The exporter under test: $EXPORTER_BIN, else the debug build in
    $CARGO_TARGET_DIR (relative to the repository) or target/."""
    if os.environ.get("EXPORTER_BIN"):
        return Path(os.environ["EXPORTER_BIN"])
    target = REPO / os.environ.get("CARGO_TARGET_DIR", "target")
    return target / "debug" / "vpc-flow-exporter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
