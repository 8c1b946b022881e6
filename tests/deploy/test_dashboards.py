"""Static checks of the Grafana dashboards in dashboards/ and of the metric
names that dashboards and rules use. The live test
(test_live_prometheus.py) runs every query against a real Prometheus."""

from __future__ import annotations

import itertools
import json

import pytest
import yaml

from deploy_helpers import (
    DASHBOARD_DIR,
    referenced_names,
    PROMETHEUS_SERIES,
    base_metric,
    dashboard_files,
    dashboard_queries,
    documented_metrics,
    is_grafana_builtin,
    iter_panels,
    label_values_query,
    load_dashboard,
    metric_names,
    recording_rules,
    variable_query,
    variables_used,
)

EXPECTED = {"overview.json", "interface.json", "exporter-health.json"}
DASHBOARDS = dashboard_files()
IDS = [p.name for p in DASHBOARDS]


def test_the_three_dashboards_exist():
    assert {p.name for p in DASHBOARDS} == EXPECTED


def test_uids_and_titles_are_unique():
    docs = [load_dashboard(p) for p in DASHBOARDS]
    assert len({d["uid"] for d in docs}) == len(docs)
    assert len({d["title"] for d in docs}) == len(docs)


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_valid_json_current_schema(path):
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d["schemaVersion"] >= 39
    assert d["id"] is None, "exported dashboards carry no database id"
    assert d["uid"] and len(d["uid"]) <= 40
    assert d["title"] and d.get("description")


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_datasource_input_and_variable(path):
    d = load_dashboard(path)
    inputs = {i["name"]: i for i in d.get("__inputs", [])}
    assert "DS_PROMETHEUS" in inputs
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in d["templating"]["list"]}
    ds = variables.get("datasource")
    assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus"
    assert ds["current"]["value"] == "${DS_PROMETHEUS}"
    # Every panel and query goes through the variable, so that imported
    # (DS_PROMETHEUS) and provisioned (default data source) dashboards work.
    for panel in iter_panels(d["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, v["name"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_panel_ids_unique(path):
    ids = [p["id"] for p in iter_panels(load_dashboard(path)["panels"])]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"duplicate panel ids {sorted(duplicates)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_panels_titled_described_and_laid_out(path):
    panels = list(iter_panels(load_dashboard(path)["panels"]))
    for p in panels:
        assert p.get("title"), f"panel {p['id']} has no title"
        if p["type"] != "row":
            assert len(p.get("description", "")) > 20, f"panel {p['title']!r} needs a description"
            assert p.get("targets"), f"panel {p['title']!r} has no query"
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
    # No two panels overlap on the grid.
    cells = {}
    for p in panels:
        g = p["gridPos"]
        for x, y in itertools.product(range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])):
            assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
            cells[(x, y)] = p["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_every_variable_used_is_defined(path):
    d = load_dashboard(path)
    defined = {v["name"] for v in d["templating"]["list"]}
    defined |= {i["name"] for i in d.get("__inputs", [])}
    used = {v for v in variables_used(d) if not is_grafana_builtin(v)}
    assert used <= defined, f"undefined variables: {sorted(used - defined)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_query_variables_use_label_values(path):
    for v in load_dashboard(path)["templating"]["list"]:
        if v["type"] != "query":
            continue
        parsed = label_values_query(variable_query(v))
        assert parsed, f"variable {v['name']}: expected label_values(...), got {variable_query(v)!r}"
        assert v["definition"] == variable_query(v)
        if v.get("includeAll"):
            assert v.get("allValue") == ".*", f"{v['name']}: 'All' must be a regex"


def test_interface_dashboard_variables():
    d = load_dashboard(DASHBOARD_DIR / "interface.json")
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert label_values_query(variable_query(variables["interface_id"]))[1] == "interface_id"
    assert not variables["interface_id"].get("multi"), "one interface at a time"
    selector, label = label_values_query(variable_query(variables["port"]))
    assert label == "port" and "$interface_id" in selector


@pytest.mark.parametrize("name", ["overview.json", "interface.json"])
def test_interfaces_are_shown_by_name(name):
    """Queries that group by interface join the name in; the interface
    variable lists names, and the ENI variable follows them."""
    d = load_dashboard(DASHBOARD_DIR / name)
    for _, target in dashboard_queries(d):
        expr = target["expr"]
        if "by (interface_id" in expr:
            assert "* on(interface_id) group_left(name)" in expr, expr
            assert "topk by (interface_id) (1, vpcflow_interface_info{" in expr, expr
        assert "{{interface_id}}" not in target.get("legendFormat", ""), target
    variables = {v["name"]: v for v in d["templating"]["list"]}
    order = [v["name"] for v in d["templating"]["list"]]
    assert order.index("name") < order.index("interface_id")
    # Account and region narrow the names (vpcflow_interface_info's labels).
    assert order.index("account_id") < order.index("region") < order.index("name")
    for label in ("account_id", "region"):
        selector, found = label_values_query(variable_query(variables[label]))
        assert (found, selector.split("{")[0]) == (label, "vpcflow_interface_info")
        assert variables[label]["includeAll"] and variables[label]["multi"]
    for narrowed in ("name", "interface_id"):
        query = variable_query(variables[narrowed])
        assert 'account_id=~"$account_id"' in query and 'region=~"$region"' in query, query
    selector, label = label_values_query(variable_query(variables["name"]))
    assert (label, selector.split("{")[0]) == ("name", "vpcflow_interface_info")
    selector, label = label_values_query(variable_query(variables["interface_id"]))
    assert label == "interface_id" and "$name" in selector


def test_exporter_health_shows_interfaces_by_name():
    """The health dashboard has no interface variables, but its per-interface
    panels name interfaces as the others do."""
    d = load_dashboard(DASHBOARD_DIR / "exporter-health.json")
    grouped = 0
    for _, target in dashboard_queries(d):
        expr = target["expr"]
        if "by (interface_id" in expr:
            grouped += 1
            assert "* on(interface_id) group_left(name)" in expr, expr
            assert "topk by (interface_id) (1, vpcflow_interface_info{" in expr, expr
        assert "{{interface_id}}" not in target.get("legendFormat", ""), target
    assert grouped >= 4


def test_overview_speaks_the_operators_words():
    titles = {p["title"] for p in iter_panels(load_dashboard(DASHBOARD_DIR / "overview.json")["panels"])}
    for title in [
        "Let in, never answered",
        "Replies blocked on the way out",
        "Blocked on the way in",
        "Refused (nothing listening)",
        "Sessions by verdict",
        "Bytes by verdict",
    ]:
        assert title in titles
    queries = [t["expr"] for _, t in dashboard_queries(load_dashboard(DASHBOARD_DIR / "overview.json"))]
    assert any(q.lstrip("(").startswith("topk(") for q in queries), "top interfaces and ports"


def test_exporter_health_covers_the_self_metrics():
    d = load_dashboard(DASHBOARD_DIR / "exporter-health.json")
    used = set()
    for _, t in dashboard_queries(d):
        used |= metric_names(t["expr"])
    for name in [
        "up", "vpcflow_up", "vpcflow_poll_duration_seconds_bucket", "vpcflow_api_calls_total",
        "vpcflow_api_throttles_total", "vpcflow_delivery_delay_seconds_bucket",
        "vpcflow_log_events_fetched_total", "vpcflow_log_events_new_total", "vpcflow_records_total",
        "vpcflow_malformed_records_total", "vpcflow_pending_sessions", "vpcflow_interfaces_watched",
        # [s3]
        "vpcflow_s3_objects_total", "vpcflow_sqs_messages_total",
        "vpcflow_s3_object_delay_seconds_bucket", "vpcflow_s3_object_bytes_read_total",
        "vpcflow_s3_object_records_read_total",
    ]:
        assert name in used, name
    exprs = " ".join(t["expr"] for _, t in dashboard_queries(d))
    assert "histogram_quantile(" in exprs
    assert 'log_status="SKIPDATA"' in exprs and 'log_status="NODATA"' in exprs


def test_provisioning_files():
    ds = yaml.safe_load((DASHBOARD_DIR / "provisioning/datasources/prometheus.yaml").read_text())
    assert ds["apiVersion"] == 1
    assert [d["type"] for d in ds["datasources"]] == ["prometheus"]
    prov = yaml.safe_load((DASHBOARD_DIR / "provisioning/dashboards/vpc-flow-exporter.yaml").read_text())
    assert prov["apiVersion"] == 1
    (provider,) = prov["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


# ---------------------------------------------- metric names vs metrics.md


def test_metric_name_extractor():
    assert metric_names(
        'topk(10, sum by (interface_id, port) (rate(vpcflow_sessions_total{job=~"$job", verdict="x"}[$__rate_interval]))) > 0'
    ) == {"vpcflow_sessions_total"}
    assert metric_names(
        "histogram_quantile(0.9, sum by (le) (rate(vpcflow_delivery_delay_seconds_bucket[30m]))) > 600"
    ) == {"vpcflow_delivery_delay_seconds_bucket"}
    assert metric_names(
        'up{job="a"} == 0 or absent(up{job="a"})'
    ) == {"up"}
    assert metric_names(
        "a:b:rate5m > 3 * sum without (x) (rate(c_total[1d] offset 30m)) unless on (y) group_left d"
    ) == {"a:b:rate5m", "c_total", "d"}
    assert metric_names("time() - max(x_seconds) + 1e-9") == {"x_seconds"}


def test_every_referenced_metric_is_documented():
    documented = documented_metrics()
    assert "vpcflow_sessions_total" in documented, "docs/metrics.md tables not found"
    recorded = {r["record"] for r in recording_rules()}
    unknown = {}
    for name, where in referenced_names().items():
        if name in PROMETHEUS_SERIES or name in recorded or base_metric(name, documented):
            continue
        unknown[name] = sorted(where)
    assert not unknown, f"metrics not in docs/metrics.md: {unknown}"


def test_recorded_series_used_are_defined():
    recorded = {r["record"] for r in recording_rules()}
    used = {n for n in referenced_names() if ":" in n}
    assert used <= recorded, sorted(used - recorded)
