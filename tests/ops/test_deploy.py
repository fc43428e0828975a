"""deploy/ is consistent with the code: what can be checked without a container engine or a cluster.

docker-compose (Debian's package) validates the compose file against the compose specification; kubectl renders
the kustomization; promtool checks the Prometheus config; the rest (images, ports, env names, probes, metric names
in the dashboard) is checked here against streams/settings.py and docs/METRICS.md.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from dispatch import load_city_pack
from streams import health
from streams.settings import Settings
from tests.ops.catalogue import ROOT, base_name, catalogue, metric_names
from tests.ops.tools import require

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s" / "base"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "cityloop.json"
SETTINGS_ENV = {f"CITYLOOP_{name.upper()}" for name in Settings.model_fields}
WORKER_PORT, API_PORT = 6066, 8080


def _env_names(env: Any) -> set[str]:
    if isinstance(env, dict):
        return set(env)
    return {item.split("=", 1)[0] for item in env}


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_every_yaml_and_json_file_in_deploy_parses():
    """Each YAML document and JSON file under deploy/ parses."""
    files = sorted(DEPLOY.rglob("*.y*ml")) + sorted(DEPLOY.rglob("*.json"))
    assert len(files) >= 15
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            assert list(yaml.safe_load_all(path.read_text())), path


def test_docker_compose_config_validates_the_compose_file():
    """`docker-compose config` (the compose specification's validator, no engine needed) accepts the file."""
    result = subprocess.run([require("docker-compose"), "-f", str(COMPOSE), "config", "-q"], capture_output=True,
                            text=True, timeout=120, cwd=DEPLOY)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_kafka_in_kraft_mode_with_listeners_the_workers_use():
    """One Apache Kafka broker in KRaft mode (broker and controller, no ZooKeeper), and the workers' bootstrap is
    its advertised in-network listener."""
    services = _compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in json.dumps(_compose()).lower()
    listeners = dict(re.findall(r"(\w+)://([^,]+)", env["KAFKA_ADVERTISED_LISTENERS"]))
    assert services["worker"]["environment"]["CITYLOOP_KAFKA_BOOTSTRAP"] == listeners["PLAINTEXT"]
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")


def test_compose_services_use_the_image_ports_env_and_health_the_code_defines():
    """Workers (scalable), the API, and the topics job run the project's image with only real CITYLOOP_* settings;
    the worker listens on 6066 with a /health check and waits for the topics job; Prometheus gets the rules."""
    compose = _compose()
    services = compose["services"]
    for name in ("topics", "worker", "api"):
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).exists()
        assert _env_names(service["environment"]) <= SETTINGS_ENV, name
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["worker"]["command"] == ["worker"] and services["api"]["command"] == ["api"]
    worker = services["worker"]
    assert worker["environment"]["CITYLOOP_WEB_PORT"] == str(WORKER_PORT)
    assert worker["environment"]["CITYLOOP_WEB_HOST"] == "0.0.0.0"
    assert str(WORKER_PORT) in worker["expose"] and "ports" not in worker, "replicas must not fight over a host port"
    assert worker["deploy"]["replicas"] >= 2
    assert "/health" in " ".join(worker["healthcheck"]["test"])
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert any(p.endswith(f":{API_PORT}:{API_PORT}") for p in services["api"]["ports"])
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))
    mounts = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus/alerts.yml:" in mounts and "./prometheus/prometheus.yml:" in mounts
    assert "./grafana/provisioning:" in " ".join(services["grafana"]["volumes"])


def test_prometheus_config_for_compose_is_valid_and_scrapes_the_workers():
    """`promtool check config` accepts it (with the rules beside it); it scrapes job cityloop-worker on 6066."""
    config_path = DEPLOY / "prometheus" / "prometheus.yml"
    result = subprocess.run([require("promtool"), "check", "config", str(config_path)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(config_path.read_text())["scrape_configs"]}
    assert jobs["cityloop-worker"]["dns_sd_configs"][0]["port"] == WORKER_PORT
    assert jobs["cityloop-worker"]["dns_sd_configs"][0]["names"] == ["worker"]


def test_dockerfile_is_multi_stage_pinned_non_root_and_runs_cityloop():
    """Two stages from a pinned Python 3.11 slim image, a numeric non-root user, entrypoint `cityloop`, port 6066."""
    text = (DEPLOY / "Dockerfile").read_text()
    pinned = re.search(r"^ARG PYTHON_IMAGE=python:(3\.11\.\d+)-slim", text, re.M)
    assert pinned, "Python 3.11 slim, pinned to a patch release"
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2 and "COPY --from=build" in text
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0")), user
    assert re.search(r'^ENTRYPOINT \["cityloop"\]', text, re.M)
    assert re.search(rf"^EXPOSE .*\b{WORKER_PORT}\b", text, re.M)
    for package in ("streams", "classifiers", "dispatch", "feedback"):
        assert f"COPY {package} " in text


def test_dashboard_reads_only_catalogued_metrics_and_covers_the_catalogue():
    """Every PromQL expression in the Grafana dashboard names metrics of docs/METRICS.md, and the dashboard shows
    each of the operational metrics the issue lists; its datasource is the provisioned one."""
    dashboard = json.loads(DASHBOARD.read_text())
    entries = catalogue()
    used: set[str] = set()
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            names = {base_name(n, entries) for n in metric_names(target["expr"])}
            assert names <= set(entries), f"{panel['title']}: {sorted(names - set(entries))}"
            assert target["datasource"]["uid"] == uid
            used |= names
    required = {"up", "cityloop_worker_ready", "cityloop_ingested_total", "cityloop_deadletters_total",
                "cityloop_classification_confidence", "cityloop_merges_total", "cityloop_assignments_total",
                "cityloop_order_events_total", "cityloop_sla_warnings_total", "cityloop_sla_breaches_total",
                "cityloop_report_to_task_seconds", "cityloop_time_to_acknowledge_seconds",
                "cityloop_time_to_resolve_seconds", "cityloop_redis_errors_total",
                "cityloop_consumer_lag_records"}  # fmt: skip
    assert required <= used, f"not on the dashboard: {sorted(required - used)}"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/cityloop.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def _rendered_kustomization() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl:
        result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    # Without kubectl: the resources as written (the generators' ConfigMaps are checked from the kustomization).
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def test_kustomization_lists_existing_files_and_renders():
    """Every resource and generator file of the kustomization exists; `kubectl kustomize` renders it (when kubectl
    is installed, as on the project's machines)."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), name
    for generator in kustomization["configMapGenerator"]:
        for entry in generator.get("files", []):
            assert (K8S / entry.split("=")[-1]).is_file(), entry
    kinds = {doc["kind"] for doc in _rendered_kustomization()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Job", "Namespace"} <= kinds


def test_k8s_workloads_use_the_image_ports_settings_probes_and_limits():
    """Worker and API Deployments run the project image with args worker / api, ports 6066 / 8080, settings from a
    ConfigMap holding only real CITYLOOP_* names, readiness on /health, liveness, requests and limits, non-root; the
    HPA scales the worker Deployment within the partition count."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    settings = next(g for g in kustomization["configMapGenerator"] if g["name"] == "cityloop-settings")
    values = dict(item.split("=", 1) for item in settings["literals"])
    assert set(values) <= SETTINGS_ENV
    assert values["CITYLOOP_WEB_PORT"] == str(WORKER_PORT) and values["CITYLOOP_WEB_HOST"] == "0.0.0.0"
    (image,) = kustomization["images"]
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _rendered_kustomization()}
    for name, args, port in (("cityloop-worker", ["worker"], WORKER_PORT), ("cityloop-api", ["api"], API_PORT)):
        spec = docs[("Deployment", name)]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["image"] in (image["name"], f"{image['newName']}:{image['newTag']}")
        assert container["args"] == args
        assert [p["containerPort"] for p in container["ports"]] == [port]
        _check_probes(name, container)
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert [ref["configMapRef"]["name"].startswith("cityloop-settings") for ref in container["envFrom"]] == [True]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["city"] == values["CITYLOOP_CITY"]
    service_ports = {
        d["metadata"]["name"]: d["spec"]["ports"][0]["port"] for (k, _), d in docs.items() if k == "Service"
    }
    assert service_ports == {"cityloop-worker": WORKER_PORT, "cityloop-api": API_PORT}
    hpa = docs[("HorizontalPodAutoscaler", "cityloop-worker")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cityloop-worker"}
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"] <= int(values["CITYLOOP_PARTITIONS"])
    job = docs[("Job", "cityloop-topics")]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["topics", "create"]


def _check_probes(name: str, container: dict[str, Any]) -> None:
    """HTTP probes on the paths the code serves (streams/health.py), each with a timeout longer than the checks behind
    it: a TCP check passed with the worker frozen (SIGSTOP), and a liveness that asked Redis restarted every API pod
    in a Redis outage."""
    probes = {kind: container[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["httpGet"]["path"] == health.READINESS_PATH, name
    assert probes["livenessProbe"]["httpGet"]["path"] == health.LIVENESS_PATH, name
    assert probes["startupProbe"]["httpGet"]["path"] == health.LIVENESS_PATH, name
    for kind, probe in probes.items():
        assert set(probe) & {"tcpSocket", "exec", "grpc"} == set(), (name, kind)
        assert probe["timeoutSeconds"] > health.CHECK_TIMEOUT_S, (name, kind)
    liveness = probes["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] <= 60, (name, "a frozen pod restarts within 1 min")


def test_the_city_pack_in_the_config_map_loads(tmp_path: Path):
    """The ConfigMap's city pack, laid out as the volume's items lay it out, is a valid pack."""
    (tmp_path / "layers").mkdir()
    shutil.copy(K8S / "city" / "city.yaml", tmp_path / "city.yaml")
    for layer in (K8S / "city" / "layers").iterdir():
        shutil.copy(layer, tmp_path / "layers" / layer.name)
    pack = load_city_pack(str(tmp_path))
    assert pack.name == "Lindenhaven"


def test_every_setting_the_manifests_name_exists():
    """The compose file and the k8s ConfigMap use only CITYLOOP_* names that streams/settings.py reads (a worker
    would silently ignore an unknown one, so a typo must fail here)."""
    text = COMPOSE.read_text() + (K8S / "kustomization.yaml").read_text()
    assert set(re.findall(r"\bCITYLOOP_[A-Z_]+", text)) <= SETTINGS_ENV
