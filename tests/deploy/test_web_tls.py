"""The TLS examples: deploy/web-config.yml (the exporter-toolkit web
configuration), the Kubernetes overlay deploy/kubernetes/tls/ and the ECS
task definition deploy/ecs/task-definition-tls.json. Their probes must
keep working with TLS on: the probe paths are excluded from
authentication in the web configuration, the kubelet probe speaks HTTPS,
the ECS health check runs curl over HTTPS on loopback. (That
deploy/web-config.yml loads is tests/web_config.rs's, with generated
certificates.)"""

from __future__ import annotations

import json

import botocore.session
import yaml
from botocore.validate import ParamValidator

from deploy_helpers import REPO

WEB_CONFIG = REPO / "deploy" / "web-config.yml"
OVERLAY = REPO / "deploy" / "kubernetes" / "tls"
BASE = REPO / "deploy" / "kubernetes"
TLS_TASK = REPO / "deploy" / "ecs" / "task-definition-tls.json"
PLAIN_TASK = REPO / "deploy" / "ecs" / "task-definition.json"


def web_config() -> dict:
    return yaml.safe_load(WEB_CONFIG.read_text(encoding="utf-8"))


def test_web_config_opens_only_the_probe_paths():
    config = web_config()
    assert config["auth_excluded_paths"] == ["/healthz", "/ready"]
    tls = config["tls_server_config"]
    assert tls["client_auth_type"] == "RequireAndVerifyClientCert"
    # Relative names: the overlay and the ECS task put them beside web.yml.
    for key in ("cert_file", "key_file", "client_ca_file"):
        assert "/" not in tls[key], key
    assert config["basic_auth_users"]


def overlay_patch(name: str) -> dict:
    return yaml.safe_load((OVERLAY / name).read_text(encoding="utf-8"))


def test_overlay_builds_on_the_sidecar_example():
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["resources"] == ["../"]
    patches = [p["path"] for p in kustomization["patches"]]
    assert sorted(patches) == sorted(p.name for p in OVERLAY.glob("*.yaml") if p.name != "kustomization.yaml")
    base = {}
    for name in yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]:
        for doc in yaml.safe_load_all((BASE / name).read_text()):
            base[(doc["kind"], doc["metadata"]["name"])] = doc
    for name in patches:
        patch = overlay_patch(name)
        assert (patch["kind"], patch["metadata"]["name"]) in base, f"{name} patches nothing"


def test_overlay_probe_speaks_https_to_an_excluded_path():
    deployment = overlay_patch("deployment-tls.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    probe = container["livenessProbe"]["httpGet"]
    assert probe["scheme"] == "HTTPS"
    assert probe["path"] in web_config()["auth_excluded_paths"]
    args = container["args"]
    web_yml = args[args.index("--web.config.file") + 1]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    folder = web_yml.rsplit("/", 1)[0]
    assert folder in mounts, "web.yml's folder is mounted"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "projected" in volumes[mounts[folder]], "one folder for web.yml and the certificates"
    assert not any("subPath" in m for m in container["volumeMounts"]), "subPath never sees a renewal"


def test_service_monitor_scrapes_with_https_certificate_and_password():
    (endpoint,) = overlay_patch("servicemonitor-tls.yaml")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert {"ca", "cert", "keySecret"} <= set(endpoint["tlsConfig"])
    assert {"username", "password"} <= set(endpoint["basicAuth"])


def test_tls_task_definition_matches_register_task_definition_shape():
    task = json.loads(TLS_TASK.read_text(encoding="utf-8"))
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(task, shape)
    assert not report.has_errors(), report.generate_report()


def test_tls_task_health_check_uses_https_on_an_excluded_path():
    task = json.loads(TLS_TASK.read_text(encoding="utf-8"))
    containers = {c["name"]: c for c in task["containerDefinitions"]}
    exporter = containers["vpc-flow-exporter"]
    command = exporter["healthCheck"]["command"]
    assert command[:2] == ["CMD", "curl"]
    # -k: the check runs on loopback inside the task, where no one can
    # stand in the middle; the certificate is for Prometheus to verify.
    assert "-fsSk" in command
    assert command[-1] == "https://127.0.0.1:9917" + "/healthz"
    assert "/healthz" in web_config()["auth_excluded_paths"]
    env = {e["name"]: e["value"] for e in exporter["environment"]}
    web_yml = env["VPC_FLOW_EXPORTER__SERVER__WEB_CONFIG_FILE"]
    web_mounts = [m for m in exporter["mountPoints"] if m["sourceVolume"] == "web"]
    (mount,) = web_mounts
    assert web_yml.startswith(mount["containerPath"] + "/")
    (files,) = [c for c in task["containerDefinitions"] if c["name"] != "vpc-flow-exporter"]
    assert exporter["dependsOn"] == [{"containerName": files["name"], "condition": "SUCCESS"}]
    assert files["essential"] is False
    written = files["command"][-1]
    for name in ("web.yml", "tls.crt", "tls.key", "ca.crt"):
        assert f"/web/{name}" in written, name


def test_tls_task_is_the_plain_task_plus_tls():
    plain = json.loads(PLAIN_TASK.read_text(encoding="utf-8"))
    tls = json.loads(TLS_TASK.read_text(encoding="utf-8"))
    (plain_exporter,) = plain["containerDefinitions"]
    tls_exporter = [c for c in tls["containerDefinitions"] if c["name"] == "vpc-flow-exporter"][0]
    # The same command (JSON logs), state on the same EFS volume.
    for key in ("image", "command", "portMappings", "user", "readonlyRootFilesystem", "logConfiguration"):
        assert tls_exporter[key] == plain_exporter[key], key
    tls_env = {e["name"]: e["value"] for e in tls_exporter["environment"]}
    assert "VPC_FLOW_EXPORTER__SERVER__WEB_CONFIG_FILE" in tls_env
    for entry in plain_exporter["environment"]:
        assert tls_env[entry["name"]] == entry["value"], entry["name"]
    for mount in plain_exporter["mountPoints"]:
        assert mount in tls_exporter["mountPoints"], mount
    for volume in plain["volumes"]:
        assert volume in tls["volumes"], volume["name"]


def test_overlay_keeps_the_base_arguments():
    """`args` in a patch replaces the base list: the overlay repeats it."""
    (deployment,) = [
        doc
        for doc in yaml.safe_load_all((BASE / "deployment.yaml").read_text(encoding="utf-8"))
        if doc["kind"] == "Deployment"
    ]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    (base_container,) = [c for c in containers if c["name"] == "vpc-flow-exporter"]
    (container,) = overlay_patch("deployment-tls.yaml")["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[: len(base_container["args"])] == base_container["args"]
    assert args[len(base_container["args"]) :] == ["--web.config.file", "/etc/vpc-flow-exporter/web/web.yml"]
