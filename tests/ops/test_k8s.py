"""deploy/k8s renders, and what it renders agrees with the code: names, keys, probes, scaling, security.

Rendered with `kubectl kustomize` (tests/ops/kustomize.py falls back to a small renderer of its own without kubectl).
The manifests cannot run here (no cluster), so each check ties a manifest's value to the code or to another manifest:
a Secret key a pod names must exist or the pod never starts; the lag scaler must read the group and topics the
workers really consume or it scales on nothing; the ServiceMonitors must produce the job labels the alerts match.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from dispatch import load_city_pack
from streams import health
from streams.settings import Settings
from streams.topics import Topics
from tests.ops.catalogue import ROOT
from tests.ops.kustomize import Doc, missing, overlay, pod_templates, references, render, rendered_by_kubectl
from tests.ops.tools import require

K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
SERVICEMONITOR = K8S / "components" / "servicemonitor"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SETTINGS_ENV = {f"CITYLOOP_{name.upper()}" for name in Settings.model_fields}
WORKER_PORT, API_PORT = 6066, 8080
SECRET_SETTINGS = {"CITYLOOP_REDIS_URL", "CITYLOOP_OPEN311_API_KEYS", "CITYLOOP_KAFKA_SASL_USERNAME",
                   "CITYLOOP_KAFKA_SASL_PASSWORD", "CITYLOOP_KAFKA_SSL_KEY_PASSWORD"}  # fmt: skip


def _by_kind_and_name(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _settings(docs: list[Doc]) -> dict[str, str]:
    """The settings ConfigMap's data (kustomize suffixes a generated ConfigMap's name with a hash of its content)."""
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("cityloop-settings")]
    return dict(config["data"])


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return render(BASE)


def test_kustomization_lists_existing_files_and_renders_what_the_issue_asks(base):
    """Every resource and generator file exists; the base renders the worker's ScaledObject (no CPU HPA), the Secrets,
    both PodDisruptionBudgets, the topics Job, and probes on both Deployments."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        assert (BASE / name).is_file(), name
    for generator in kustomization["configMapGenerator"]:
        for entry in generator.get("files", []):
            assert (BASE / entry.split("=")[-1]).is_file(), entry
    docs = _by_kind_and_name(base)
    kinds = {kind for kind, _ in docs}
    assert {"Deployment", "Service", "ScaledObject", "TriggerAuthentication", "Secret", "PodDisruptionBudget", "Job",
            "Namespace", "ConfigMap", "CronJob", "PersistentVolumeClaim"} <= kinds  # fmt: skip
    assert "HorizontalPodAutoscaler" not in kinds, "KEDA owns the worker's HPA; a second one would fight it"
    assert {name for kind, name in docs if kind == "Secret"} == {"cityloop-open311", "cityloop-redis", "cityloop-kafka",
                                                                 "cityloop-kafka-tls"}  # fmt: skip
    for name in ("cityloop-worker", "cityloop-api"):
        (container,) = docs[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
        assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container), name


def test_every_secret_and_config_map_key_a_pod_references_exists(base):
    """Each key a pod names (env valueFrom, envFrom, volume items) and each key KEDA's TriggerAuthentication reads is
    in a rendered Secret or ConfigMap: a missing one keeps the pod from starting (CreateContainerConfigError), which
    `kubectl kustomize` does not notice."""
    refs = references(base)
    assert len(refs) >= 20, "the walker finds the references (env, envFrom, volumes, KEDA)"
    assert {r.owner for r in refs} >= {"Deployment/cityloop-worker", "Deployment/cityloop-api", "Job/cityloop-topics",
                                       "TriggerAuthentication/cityloop-kafka"}  # fmt: skip
    assert not [r for r in refs if r.optional], "no reference is optional: a missing secret must stop the pod"
    assert missing(base) == []


def test_the_check_for_referenced_keys_finds_a_missing_one(base):
    """The check above fails when a key is gone: here the Kafka password, which four pods and KEDA read."""
    docs = [dict(d) for d in base]
    for doc in docs:
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == "cityloop-kafka":
            for field in ("data", "stringData"):
                if field in doc:
                    doc[field] = {k: v for k, v in doc[field].items() if k != "CITYLOOP_KAFKA_SASL_PASSWORD"}
    problems = missing(docs)
    assert len(problems) == 5, problems
    assert all("has no key CITYLOOP_KAFKA_SASL_PASSWORD" in p for p in problems)


def test_secrets_are_out_of_the_config_map_and_each_pod_gets_only_the_ones_it_uses(base):
    """The Redis URL (with its password), the Open311 keys and the Kafka credentials come from Secrets, never the
    ConfigMap; only the API gets the Open311 keys; every env name is a setting streams/settings.py reads."""
    settings = _settings(base)
    assert set(settings) <= SETTINGS_ENV
    assert not set(settings) & SECRET_SETTINGS, "a secret in the ConfigMap"
    secret_env: dict[str, set[str]] = {}
    for owner, spec in pod_templates(base):
        for container in spec["containers"]:
            names = {e["name"] for e in container.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
            assert names <= SETTINGS_ENV, (owner, names - SETTINGS_ENV)
            assert not any("secretRef" in ref for ref in container.get("envFrom", [])), "secrets by name, not envFrom"
            secret_env[owner] = names
    kafka = {"CITYLOOP_KAFKA_SASL_USERNAME", "CITYLOOP_KAFKA_SASL_PASSWORD"}
    assert secret_env["Deployment/cityloop-api"] == kafka | {"CITYLOOP_REDIS_URL", "CITYLOOP_OPEN311_API_KEYS"}
    assert secret_env["Deployment/cityloop-worker"] == kafka | {"CITYLOOP_REDIS_URL"}
    assert secret_env["Job/cityloop-topics"] == kafka
    assert secret_env["CronJob/cityloop-retrain"] == kafka, "retraining reads the feedback topic, not Redis"
    open311 = _by_kind_and_name(base)[("Secret", "cityloop-open311")]
    placeholder = (open311.get("stringData") or open311.get("data"))["CITYLOOP_OPEN311_API_KEYS"]
    assert placeholder == "", "an empty placeholder: the API then refuses to start, naming the setting"


def test_a_city_overlay_replaces_the_placeholder_secrets_as_secrets_yaml_says(tmp_path: Path):
    """The way secrets.yaml tells a city to supply its secrets (an overlay's secretGenerator, `behavior: replace`,
    from files kept out of git) renders the city's values under the same names, and every reference still holds."""
    (tmp_path / "open311.env").write_text("CITYLOOP_OPEN311_API_KEYS=city-key-1,city-key-2\n")
    (tmp_path / "redis.env").write_text("CITYLOOP_REDIS_URL=rediss://:s3cret@redis.city.example:6380/0\n")
    kustomization = {"resources": ["{base}"], "secretGenerator": [
        {"name": "cityloop-open311", "behavior": "replace", "envs": ["open311.env"]},
        {"name": "cityloop-redis", "behavior": "replace", "envs": ["redis.env"]}]}  # fmt: skip
    docs = render(overlay(tmp_path, kustomization, BASE))
    assert missing(docs) == []
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    value = base64.b64decode(secrets["cityloop-open311"]["data"]["CITYLOOP_OPEN311_API_KEYS"]).decode()
    assert value == "city-key-1,city-key-2"


def test_the_worker_scales_on_the_lag_of_the_group_and_topics_the_code_reads(base):
    """KEDA's Kafka scaler reads the workers' real ingest group (Settings.ingest_group) on each input topic
    (Topics.inputs) at the ConfigMap's bootstrap, between 1 and the partition count, no idle consumers; the CPU HPA
    never scaled (0.14-0.17 core under load)."""
    docs = _by_kind_and_name(base)
    settings = _settings(base)
    code = Settings(topic_prefix=settings["CITYLOOP_TOPIC_PREFIX"])
    scaled = docs[("ScaledObject", "cityloop-worker")]["spec"]
    assert (
        scaled["scaleTargetRef"]["name"] == "cityloop-worker" and scaled["scaleTargetRef"].get("kind") == "Deployment"
    )
    assert scaled["minReplicaCount"] == 1
    assert scaled["maxReplicaCount"] == int(settings["CITYLOOP_PARTITIONS"]), "a worker past the partitions idles"
    assert "replicas" not in docs[("Deployment", "cityloop-worker")]["spec"], "KEDA sets the replicas"
    triggers = scaled["triggers"]
    assert {t["type"] for t in triggers} == {"kafka"}
    assert sorted(t["metadata"]["topic"] for t in triggers) == sorted(Topics(code.topic_prefix).inputs())
    protocol = settings.get("CITYLOOP_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == code.ingest_group, "the group whose lag grows when workers fall behind"
        assert meta["bootstrapServers"] == settings["CITYLOOP_KAFKA_BOOTSTRAP"]
        assert meta["allowIdleConsumers"] == "false"
        assert meta["offsetResetPolicy"] == "earliest", "as the workers' consumer (streams/ingest.py)"
        assert int(meta["lagThreshold"]) > 0
        assert meta["tls"] == ("enable" if protocol.endswith("SSL") else "disable")
        assert (meta["sasl"] == "none") == (not protocol.startswith("SASL_"))
        assert ("TriggerAuthentication", trigger["authenticationRef"]["name"]) in docs


def test_every_pod_runs_as_non_root_with_seccomp_a_read_only_root_and_no_capabilities(base):
    """The Deployments and the topics Job (which had no securityContext): non-root, the RuntimeDefault seccomp
    profile, no privilege escalation, a read-only root with emptyDirs where they write, all capabilities dropped."""
    templates = dict(pod_templates(base))
    assert set(templates) == {"Deployment/cityloop-worker", "Deployment/cityloop-api", "Job/cityloop-topics",
                              "CronJob/cityloop-retrain"}  # fmt: skip
    for owner, spec in templates.items():
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True and pod.get("runAsUser", 0) > 0, owner
        assert spec.get("automountServiceAccountToken") is False, owner
        for container in spec["containers"]:
            own = container.get("securityContext", {})
            seccomp = own.get("seccompProfile") or pod.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, owner
            assert own.get("allowPrivilegeEscalation") is False, owner
            assert own.get("readOnlyRootFilesystem") is True, owner
            assert own.get("capabilities", {}).get("drop") == ["ALL"], owner
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            writable = {m["mountPath"] for m in container.get("volumeMounts", []) if "emptyDir" in volumes[m["name"]]}
            assert "/tmp" in writable, owner
    data_dir = _settings(base)["CITYLOOP_DATA_DIR"]
    for name in ("Deployment/cityloop-worker", "Deployment/cityloop-api"):
        (container,) = templates[name]["containers"]
        volumes = {v["name"]: v for v in templates[name]["volumes"]}
        assert any(m["mountPath"] == data_dir and "emptyDir" in volumes[m["name"]] for m in container["volumeMounts"])


def test_the_api_and_the_workers_have_disruption_budgets_that_let_a_drain_proceed(base):
    """The API keeps one of its replicas through a drain; the workers lose at most one at a time, and a drain is not
    blocked while KEDA runs a single worker (minAvailable 1 would block it)."""
    docs = _by_kind_and_name(base)
    api = docs[("Deployment", "cityloop-api")]
    api_pdb = docs[("PodDisruptionBudget", "cityloop-api")]["spec"]
    assert api_pdb["selector"]["matchLabels"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    assert 1 <= api_pdb["minAvailable"] < api["spec"]["replicas"]
    worker_pdb = docs[("PodDisruptionBudget", "cityloop-worker")]["spec"]
    assert worker_pdb == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "cityloop-worker"}},
    }


def test_k8s_workloads_use_the_image_ports_settings_probes_and_limits(base):
    """Worker and API Deployments run the project image with args worker / api, ports 6066 / 8080, settings from the
    ConfigMap, HTTP probes on the code's paths, requests and limits; the Job runs `topics create`."""
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    values = _settings(base)
    assert values["CITYLOOP_WEB_PORT"] == str(WORKER_PORT) and values["CITYLOOP_WEB_HOST"] == "0.0.0.0"
    (image,) = kustomization["images"]
    docs = _by_kind_and_name(base)
    for name, args, port in (("cityloop-worker", ["worker"], WORKER_PORT), ("cityloop-api", ["api"], API_PORT)):
        spec = docs[("Deployment", name)]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["image"] in (image["name"], f"{image['newName']}:{image['newTag']}")
        assert container["args"] == args
        assert [p["containerPort"] for p in container["ports"]] == [port]
        _check_probes(name, container)
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert [ref["configMapRef"]["name"].startswith("cityloop-settings") for ref in container["envFrom"]] == [True]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["city"] == values["CITYLOOP_CITY"]
    service_ports = {n: d["spec"]["ports"][0]["port"] for (k, n), d in docs.items() if k == "Service"}
    assert service_ports == {"cityloop-worker": WORKER_PORT, "cityloop-api": API_PORT}
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


def _alert_jobs() -> set[str]:
    return set(re.findall(r'job="([^"]+)"', ALERTS.read_text()))


def test_service_monitors_give_the_series_the_job_labels_the_alerts_match(base, tmp_path: Path):
    """With the optional component, each ServiceMonitor selects its Service, scrapes a port the Service names, and takes
    `job` from the Service's app.kubernetes.io/name: cityloop-worker and cityloop-api, the jobs alerts.yml matches
    (under annotation scraping nothing set them). The base alone has no ServiceMonitor (no CRD needed)."""
    assert not [d for d in base if d["kind"] == "ServiceMonitor"]
    docs = render(overlay(tmp_path, {"resources": ["{base}/base"], "components": ["{base}/components/servicemonitor"]},
                          K8S))  # fmt: skip
    services = [d for d in docs if d["kind"] == "Service"]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    jobs = set()
    for monitor in monitors:
        spec = monitor["spec"]
        (service,) = [s for s in services if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
        assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in spec["endpoints"]} <= ports
        assert all(e["path"] == "/metrics" for e in spec["endpoints"])
        jobs.add(service["metadata"]["labels"][spec["jobLabel"]])
    assert jobs == _alert_jobs() == {"cityloop-worker", "cityloop-api"}
    assert missing(docs) == []
    if rendered_by_kubectl():  # the component's patch: no second scrape by annotation under another job
        templates = [d["spec"]["template"] for d in docs if d["kind"] == "Deployment"]
        assert [t["metadata"]["labels"] for t in templates if t["metadata"].get("annotations")] == []


def test_the_annotation_scrape_config_sets_the_job_from_the_pods_name_label(base, tmp_path: Path):
    """For a Prometheus without the operator: deploy/k8s/prometheus/scrape-configs.yml keeps the annotated CityLoop
    pods, scrapes the annotated port and path, and sets `job` from the pod label whose values are the alerts' jobs.
    promtool checks its relabelling (in a file_sd job: Debian's promtool is built without Kubernetes discovery)."""
    config = yaml.safe_load((K8S / "prometheus" / "scrape-configs.yml").read_text())
    (job,) = config["scrape_configs"]
    relabel = job["relabel_configs"]
    sets_job = [r for r in relabel if r.get("target_label") == "job"]
    assert sets_job == [
        {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name"], "target_label": "job"}
    ]
    keep = next(r for r in relabel if r["source_labels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]
                and r.get("action") == "keep")  # fmt: skip
    names = set()
    for doc in base:
        if doc["kind"] == "Deployment":
            template = doc["spec"]["template"]
            name = template["metadata"]["labels"]["app.kubernetes.io/name"]
            assert re.fullmatch(keep["regex"], name), name
            annotations = template["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true"
            (container,) = template["spec"]["containers"]
            assert int(annotations["prometheus.io/port"]) == container["ports"][0]["containerPort"]
            names.add(name)
    assert names == _alert_jobs()
    checked = {"scrape_configs": [{"job_name": "cityloop", "file_sd_configs": [{"files": ["targets.json"]}],
                                   "relabel_configs": relabel}]}  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(checked))
    result = subprocess.run([require("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workers_read_the_model_registry_the_nightly_retraining_writes(base):
    """One ReadWriteMany claim: the workers mount it read only where CITYLOOP_MODEL_REGISTRY points, the retraining
    CronJob mounts it writable at its own CITYLOOP_MODEL_REGISTRY and runs `cityloop retrain`, never two at once."""
    docs = _by_kind_and_name(base)
    claim = docs[("PersistentVolumeClaim", "cityloop-models")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "workers on several nodes read it at once"
    templates = dict(pod_templates(base))
    mounted: dict[str, tuple[str, bool, str]] = {}
    for owner in ("Deployment/cityloop-worker", "CronJob/cityloop-retrain"):
        spec = templates[owner]
        (container,) = spec["containers"]
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]
                  if "persistentVolumeClaim" in v}  # fmt: skip
        (mount,) = [m for m in container["volumeMounts"] if claims.get(m["name"]) == "cityloop-models"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["CITYLOOP_MODEL_REGISTRY"] == mount["mountPath"], owner
        mounted[owner] = (mount["mountPath"], mount.get("readOnly", False), container["args"][0])
    assert mounted["Deployment/cityloop-worker"][1:] == (True, "worker"), "workers never write the registry"
    assert mounted["CronJob/cityloop-retrain"][1:] == (False, "retrain")
    cron = docs[("CronJob", "cityloop-retrain")]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert len(cron["schedule"].split()) == 5


def test_the_city_pack_in_the_config_map_loads(tmp_path: Path):
    """The ConfigMap's city pack, laid out as the volume's items lay it out, is a valid pack."""
    (tmp_path / "layers").mkdir()
    shutil.copy(BASE / "city" / "city.yaml", tmp_path / "city.yaml")
    for layer in (BASE / "city" / "layers").iterdir():
        shutil.copy(layer, tmp_path / "layers" / layer.name)
    pack = load_city_pack(str(tmp_path))
    assert pack.name == "Lindenhaven"
