"""A real Prometheus applies deploy/k8s/prometheus/scrape-configs.yml's relabelling: the series get the job labels the
alerts match.

No cluster runs here, and Debian's Prometheus is built without Kubernetes discovery, so the pods are given to it by
file discovery with the labels Kubernetes pod discovery would attach (`__meta_kubernetes_pod_*`, made from the
rendered manifests: their labels, annotations and container ports). What is checked is what matters to the alerts:
after relabelling, the worker's target is job="cityloop-worker" and the API's job="cityloop-api", scraped on their
annotated ports; another annotated pod in the namespace is dropped; and `up{job="cityloop-worker"}` (the series
CityLoopWorkerDown reads) exists for the worker.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import free_port
from tests.ops.catalogue import ROOT
from tests.ops.kustomize import render
from tests.ops.tools import require

K8S = ROOT / "deploy" / "k8s"


def _sanitized(name: str) -> str:
    """How Kubernetes discovery turns a label or annotation name into part of a Prometheus label name."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _pod_target(template: dict[str, Any], name: str, namespace: str, port: int) -> dict[str, Any]:
    """A file-discovery target group carrying the labels pod discovery gives one container port of a pod."""
    (container,) = template["spec"]["containers"]
    labels = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": f"{name}-7d9f8b6c5-x2x4q",
        "__meta_kubernetes_pod_phase": "Running",
        "__meta_kubernetes_pod_container_name": container["name"],
    }
    for key, value in template["metadata"].get("labels", {}).items():
        labels[f"__meta_kubernetes_pod_label_{_sanitized(key)}"] = value
    for key, value in template["metadata"].get("annotations", {}).items():
        labels[f"__meta_kubernetes_pod_annotation_{_sanitized(key)}"] = str(value)
    return {"targets": [f"127.0.0.1:{port}"], "labels": labels}


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    binary = require("prometheus")
    config = yaml.safe_load((K8S / "prometheus" / "scrape-configs.yml").read_text())
    (job,) = config["scrape_configs"]
    job.pop("kubernetes_sd_configs")
    job["file_sd_configs"] = [{"files": [str(tmp_path / "pods.json")], "refresh_interval": "1s"}]
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", tmp_path
    finally:
        process.terminate()
        process.wait(timeout=30)


def _get(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}{path}", timeout=5) as response:
        return json.loads(response.read())["data"]


def _poll(what: str, condition: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except OSError:
            last = None
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {timeout} s (last: {last!r})")


def test_relabelling_gives_the_pods_the_job_labels_the_alerts_match(prometheus):
    base, directory = prometheus
    docs = render(K8S / "base")
    groups = []
    for doc in docs:
        if doc["kind"] == "Deployment":
            template = doc["spec"]["template"]
            groups.append(_pod_target(template, doc["metadata"]["name"], doc["metadata"]["namespace"], free_port()))
    stranger = {"metadata": {"labels": {"app.kubernetes.io/name": "redis"},
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9121"}},
                "spec": {"containers": [{"name": "exporter"}]}}  # fmt: skip
    groups.append(_pod_target(stranger, "redis", "cityloop", free_port()))
    (directory / "pods.json").write_text(json.dumps(groups))

    def targets() -> dict[str, Any] | None:
        data = _get(base, "/api/v1/targets")
        return data if len(data["activeTargets"]) == 2 and data["droppedTargets"] else None

    found = _poll("the two CityLoop targets and one dropped", targets)
    jobs = {t["labels"]["job"]: t for t in found["activeTargets"]}
    assert set(jobs) == {"cityloop-worker", "cityloop-api"}
    assert jobs["cityloop-worker"]["scrapeUrl"] == "http://127.0.0.1:6066/metrics", "the annotated port and path"
    assert jobs["cityloop-api"]["scrapeUrl"] == "http://127.0.0.1:8080/metrics"
    assert jobs["cityloop-worker"]["labels"]["namespace"] == "cityloop"
    dropped = found["droppedTargets"][0]["discoveredLabels"]
    assert dropped["__meta_kubernetes_pod_label_app_kubernetes_io_name"] == "redis"

    def worker_up() -> list[Any]:
        return list(_get(base, "/api/v1/query?query=up%7Bjob%3D%22cityloop-worker%22%7D")["result"])

    (series,) = _poll('up{job="cityloop-worker"}', worker_up)
    assert series["metric"]["pod"].startswith("cityloop-worker-")
