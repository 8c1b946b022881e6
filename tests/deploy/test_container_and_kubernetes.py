"""The container image recipe (deploy/Dockerfile, .dockerignore) and the
Kubernetes sidecar example (deploy/kubernetes/), read statically: no Docker
engine or cluster is needed. They must agree with each other, with the ECS
task definition and with the alert that watches the scrape job."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

import pytest
import yaml

from deploy_helpers import REPO, alerting_rules

DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CONTAINER_CONFIG = REPO / "deploy" / "container-config.toml"
K8S = REPO / "deploy" / "kubernetes"
TASK_DEFINITION = REPO / "deploy" / "ecs" / "task-definition.json"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in dockerfile_instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves `path` (relative to the repo) out of the
    build context: the last matching pattern wins, `!` re-includes."""
    ignored = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        candidates = [pattern, pattern.removeprefix("**/")]
        if any(fnmatch.fnmatchcase(p, c) for p in prefixes for c in candidates) or any(
            pattern.startswith("**/") and fnmatch.fnmatchcase(part, pattern[3:]) for part in parts
        ):
            ignored = not negate
    return ignored


def exec_form(args: str) -> list[str]:
    return json.loads(args)


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_builds_in_a_rust_stage_and_runs_slim():
    builder, final = stages()
    assert builder[0][1].startswith("rust:") and builder[0][1].endswith(" AS builder")
    run = " ".join(args for ins, args in builder if ins == "RUN")
    assert "cargo build --release --locked" in run
    assert final[0][1] in ("debian:bookworm-slim", "gcr.io/distroless/cc-debian12")


def test_dockerfile_builder_image_is_rust_1_bookworm():
    args = dict(
        a.split("=", 1) for ins, a in dockerfile_instructions() if ins == "ARG" and "=" in a
    )
    image = stages()[0][0][1].split()[0].replace("${RUST_VERSION}", args.get("RUST_VERSION", ""))
    assert image == "rust:1-bookworm"


def test_dockerfile_final_stage():
    final = dict((ins, args) for ins, args in stages()[-1])
    run = " ".join(args for ins, args in stages()[-1] if ins == "RUN")
    assert "ca-certificates" in run
    user = final["USER"].split(":")[0]
    assert user not in ("0", "root"), "run as a non-root user"
    assert final["EXPOSE"] == "9917"
    assert exec_form(final["ENTRYPOINT"]) == ["vpc-flow-exporter"]
    assert exec_form(final["CMD"]) == ["serve", "--config", "/etc/vpc-flow-exporter/config.toml"]
    # The health check's program must be installed in the final image.
    health = final["HEALTHCHECK"]
    command = exec_form(health[health.index("CMD") + 3:].strip())
    assert command[0] in run.split(), f"{command[0]} is not installed in the final stage"
    assert command[-1] == "http://127.0.0.1:9917/healthz"


def test_dockerfile_copies_exist_and_are_in_the_context():
    for stage in stages():
        for ins, args in stage:
            if ins != "COPY" or args.startswith("--from"):
                continue
            *sources, _dest = args.split()
            for src in sources:
                if src == ".":
                    continue
                assert (REPO / src).exists(), src
                assert not dockerignored(src), f"{src} is excluded by .dockerignore"


def test_dockerignore_keeps_sources_and_drops_build_output():
    for path in ["Cargo.toml", "Cargo.lock", "src/main.rs", "deploy/container-config.toml"]:
        assert not dockerignored(path), path
    for path in ["target/debug/vpc-flow-exporter", ".git/HEAD", ".venv/bin/python"]:
        assert dockerignored(path), path


def test_container_config_is_minimal_and_valid_toml():
    config = tomllib.loads(CONTAINER_CONFIG.read_text(encoding="utf-8"))
    assert config == {"server": {"listen_address": "0.0.0.0:9917"}}


def test_health_checks_agree():
    final = dict((ins, args) for ins, args in stages()[-1])
    health = final["HEALTHCHECK"]
    docker = exec_form(health[health.index("CMD") + 3:].strip())
    td = json.loads(TASK_DEFINITION.read_text(encoding="utf-8"))
    (container,) = td["containerDefinitions"]
    assert container["healthCheck"]["command"] == ["CMD", *docker]


# ---------------------------------------------------------------- Kubernetes


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            docs[doc["kind"]] = doc
    return docs


def test_every_manifest_is_listed(manifests):
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert {"Deployment", "Service", "ServiceMonitor", "ConfigMap", "ServiceAccount"} <= set(manifests)


def exporter(deployment: dict) -> dict:
    (c,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "vpc-flow-exporter"]
    return c


def test_exporter_is_a_sidecar(manifests):
    containers = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) >= 2, "the exporter runs beside an application container"
    c = exporter(manifests["Deployment"])
    assert c["args"] == ["serve", "--config", "/etc/vpc-flow-exporter/config.toml", "--log.format", "json"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9917}
    # A sidecar must not gate the pod's readiness: the application would lose
    # its Service endpoints whenever CloudWatch is unreachable.
    assert "readinessProbe" not in c
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_config_map_is_mounted_and_valid(manifests):
    deployment = manifests["Deployment"]
    c = exporter(deployment)
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/vpc-flow-exporter"]
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == manifests["ConfigMap"]["metadata"]["name"]
    config = tomllib.loads(manifests["ConfigMap"]["data"]["config.toml"])
    assert ("cloudwatch" in config) != ("files" in config), "exactly one source"
    assert config["server"]["listen_address"].endswith(":9917")
    assert config["cloudwatch"]["log_groups"][0]["name"]


def test_state_directory_is_an_empty_dir(manifests):
    """[state] on an emptyDir: checkpoints survive container restarts."""
    deployment = manifests["Deployment"]
    c = exporter(deployment)
    config = tomllib.loads(manifests["ConfigMap"]["data"]["config.toml"])
    directory = config["state"]["directory"]
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == directory]
    assert not mount.get("readOnly", False)
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


def test_service_and_service_monitor_select_the_exporter(manifests):
    pod_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = manifests["Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "metrics" and port["port"] == 9917
    monitor = manifests["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    assert manifests["Deployment"]["spec"]["template"]["spec"]["serviceAccountName"] == (
        manifests["ServiceAccount"]["metadata"]["name"]
    )


def test_scrape_job_is_the_one_the_alert_watches(manifests):
    """The Prometheus Operator names the job after the Service."""
    (down,) = [r for r in alerting_rules() if r["alert"] == "VpcFlowExporterDown"]
    jobs = set(re.findall(r'job="([^"]+)"', down["expr"]))
    assert jobs == {manifests["Service"]["metadata"]["name"]}
