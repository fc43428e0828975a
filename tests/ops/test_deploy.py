"""deploy/ is consistent with the code: what can be checked without a container engine or a cluster.

docker-compose (Debian's package) validates the compose file against the compose specification; promtool checks the
Prometheus config and amtool the Alertmanager's; the rest (images, ports, env names, health checks, Redis persistence,
metric names in the dashboard) is checked here against streams/settings.py and docs/METRICS.md. The Kubernetes
manifests: tests/ops/test_k8s.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import yaml

from streams import health
from streams.settings import Settings
from tests.ops.catalogue import ROOT, base_name, catalogue, metric_names
from tests.ops.tools import require

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
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
    the worker listens on 6066 and waits for the topics job; Prometheus gets the rules."""
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
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert any(p.endswith(f":{API_PORT}:{API_PORT}") for p in services["api"]["ports"])
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))
    mounts = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml" in mounts
    rule_files = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())["rule_files"]
    # every rule file in deploy/prometheus is loaded and mounted where prometheus.yml looks (slo.yml once was neither)
    shipped = sorted(
        p.name for p in (DEPLOY / "prometheus").glob("*.yml") if p.name != "prometheus.yml" and "_test" not in p.name
    )
    assert sorted(rule_files) == shipped
    for name in rule_files:
        assert f"./prometheus/{name}:/etc/prometheus/{name}" in mounts, name
    assert "./grafana/provisioning:" in " ".join(services["grafana"]["volumes"])


def test_compose_health_checks_ask_the_readiness_the_code_serves_on_each_services_port():
    """The worker's and the API's checks ask /readyz on their own ports (not /health, the old name; not one port for
    both, as the image's HEALTHCHECK did, which made every API container unhealthy): Docker does not restart an
    unhealthy container, so the check that matters there is whether it can serve."""
    services = _compose()["services"]
    for name, port in (("worker", WORKER_PORT), ("api", API_PORT)):
        check = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}{health.READINESS_PATH}" in check, name
    assert "HEALTHCHECK" not in re.sub(r"#.*", "", (DEPLOY / "Dockerfile").read_text())
    assert "/health" not in COMPOSE.read_text()


def test_compose_redis_keeps_an_append_only_file_on_a_volume():
    """Redis with appendonly yes, fsync'd every second, its data dir on a named volume: a Redis restarted empty made
    12% more incidents in issue 16's drill (repeat reports of dispatched problems got tasks of their own)."""
    compose = _compose()
    redis = compose["services"]["redis"]
    command = redis["command"]
    options = dict(zip(command[1::2], command[2::2], strict=False))
    assert options["--appendonly"] == "yes" and options["--appendfsync"] == "everysec"
    (volume,) = [v for v in redis["volumes"] if v.endswith(":/data")]
    assert volume.split(":")[0] in compose["volumes"]


def test_the_compose_api_is_in_development_mode_only_by_an_explicit_setting():
    """The API refuses the development Open311 key unless CITYLOOP_DEV is set: the compose file sets it, visibly, and
    takes a city's own keys from the environment; the workers get neither."""
    services = _compose()["services"]
    api = services["api"]["environment"]
    assert api["CITYLOOP_DEV"] == "${CITYLOOP_DEV:-1}"
    assert api["CITYLOOP_OPEN311_API_KEYS"] == "${CITYLOOP_OPEN311_API_KEYS:-}"
    assert not {"CITYLOOP_DEV", "CITYLOOP_OPEN311_API_KEYS"} & set(services["worker"]["environment"])


def test_alerts_go_to_the_compose_alertmanager_whose_config_amtool_accepts():
    """Prometheus sends alerts to the compose file's Alertmanager (service name and port), which loads
    deploy/alertmanager/alertmanager.yml; `amtool check-config` accepts that, and every route ends at a receiver it
    defines."""
    services = _compose()["services"]
    alertmanager = services["alertmanager"]
    assert alertmanager["image"].startswith("prom/alertmanager:")
    mount = next(v for v in alertmanager["volumes"] if v.startswith("./alertmanager/alertmanager.yml:"))
    assert mount.split(":")[1] in " ".join(alertmanager["command"])
    assert any(p == "127.0.0.1:9093:9093" for p in alertmanager["ports"])
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for am in prometheus["alerting"]["alertmanagers"] for c in am["static_configs"] for t in c["targets"]]
    assert targets == ["alertmanager:9093"]
    assert "alertmanager" in services["prometheus"]["depends_on"]
    config_path = DEPLOY / "alertmanager" / "alertmanager.yml"
    result = subprocess.run([require("amtool"), "check-config", str(config_path)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(config_path.read_text())
    receivers = {r["name"] for r in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    assert {r["receiver"] for r in routes if "receiver" in r} <= receivers


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


def test_every_setting_the_manifests_name_exists():
    """The compose file and the k8s manifests use only CITYLOOP_* names that streams/settings.py reads (a worker
    would silently ignore an unknown one, so a typo must fail here)."""
    text = COMPOSE.read_text() + "".join(path.read_text() for path in sorted(K8S.rglob("*.y*ml")))
    assert set(re.findall(r"\bCITYLOOP_[A-Z0-9_]+", text)) <= SETTINGS_ENV
