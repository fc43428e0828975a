"""Rendering deploy/k8s the way `kubectl apply -k` would, and reading what the rendered pods reference.

`kubectl kustomize` renders when kubectl is installed (the project's machines have it). Without it, a small renderer
here does what the base and the tests' overlays use: resources (files and directories), components' resources,
config map and secret generators (literals, files, env files; `behavior: replace` and `merge`) and the namespace.
It ignores patches, so what only a patch does is checked only when kubectl rendered.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def render(directory: Path) -> list[Doc]:
    """The objects the kustomization in ``directory`` renders to."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return _render(directory)


def rendered_by_kubectl() -> bool:
    return shutil.which("kubectl") is not None


def overlay(directory: Path, kustomization: dict[str, Any], base: Path) -> Path:
    """Write an overlay's kustomization.yaml in ``directory``; ``{base}`` in its strings becomes the path to ``base``
    (kustomize takes relative paths only)."""
    relative = os.path.relpath(base, directory)
    text = yaml.safe_dump(kustomization).replace("{base}", relative)
    (directory / "kustomization.yaml").write_text(text)
    return directory


def _render(directory: Path) -> list[Doc]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[Doc] = []
    for entry in spec.get("resources", []) + spec.get("components", []):
        path = directory / entry
        if path.is_dir():
            docs += _render(path)
        else:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in spec.get(key, []):
            data = _generated(directory, generator, encode=kind == "Secret")
            existing = next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == generator["name"]), None)
            if existing is None:
                docs.append({"apiVersion": "v1", "kind": kind, "metadata": {"name": generator["name"]}, "data": data})
            elif generator.get("behavior") == "merge":
                existing.setdefault("data", {}).update(data)
            else:
                existing.pop("stringData", None)
                existing["data"] = data
    if spec.get("namespace"):
        for doc in docs:
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = spec["namespace"]
    return docs


def _generated(directory: Path, generator: dict[str, Any], *, encode: bool) -> dict[str, str]:
    data: dict[str, str] = {}
    for literal in generator.get("literals", []):
        name, value = literal.split("=", 1)
        data[name] = value
    for entry in generator.get("files", []):
        name, _, path = entry.rpartition("=")
        data[name or Path(path).name] = (directory / path).read_text()
    for env_file in generator.get("envs", []):
        for line in (directory / env_file).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, value = line.split("=", 1)
                data[name] = value
    if encode:
        return {name: base64.b64encode(value.encode()).decode() for name, value in data.items()}
    return data


# ------------------------------------------------------------------ what pods reference


@dataclass(frozen=True)
class Reference:
    """A pod's (or KEDA's) reference to a Secret or ConfigMap: to one key, or to the whole object (key None)."""

    owner: str
    kind: str  # Secret or ConfigMap
    name: str
    key: str | None
    optional: bool = False


def pod_templates(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(``Kind/name``, pod spec) of every workload."""
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield f"CronJob/{doc['metadata']['name']}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def references(docs: list[Doc]) -> list[Reference]:
    """Every Secret and ConfigMap key the pods name (env valueFrom, envFrom, volumes and their items, projected
    volumes), and the keys KEDA's TriggerAuthentications read."""
    refs: list[Reference] = []
    for owner, spec in pod_templates(docs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                for field, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    if field in source:
                        ref = source[field]
                        refs.append(Reference(owner, kind, ref["name"], ref["key"], ref.get("optional", False)))
            for env_from in container.get("envFrom", []):
                for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                    if field in env_from:
                        ref = env_from[field]
                        refs.append(Reference(owner, kind, ref["name"], None, ref.get("optional", False)))
        for volume in spec.get("volumes", []):
            sources = [volume] + volume.get("projected", {}).get("sources", [])
            for source in sources:
                for field, kind, name_field in (("secret", "Secret", "secretName"), ("configMap", "ConfigMap", "name")):
                    if field not in source:
                        continue
                    ref = source[field]
                    name = ref.get(name_field) or ref.get("name")
                    optional = ref.get("optional", False)
                    items = ref.get("items") or [{"key": None}]
                    refs += [Reference(owner, kind, name, item["key"], optional) for item in items]
    for doc in docs:
        if doc["kind"] in ("TriggerAuthentication", "ClusterTriggerAuthentication"):
            for ref in doc["spec"].get("secretTargetRef", []):
                refs.append(Reference(f"{doc['kind']}/{doc['metadata']['name']}", "Secret", ref["name"], ref["key"]))
    return refs


def keys(docs: list[Doc]) -> dict[tuple[str, str], set[str]]:
    """(kind, name) -> the keys each rendered Secret and ConfigMap holds."""
    held: dict[tuple[str, str], set[str]] = {}
    for doc in docs:
        if doc["kind"] == "Secret":
            held[("Secret", doc["metadata"]["name"])] = set(doc.get("data") or {}) | set(doc.get("stringData") or {})
        elif doc["kind"] == "ConfigMap":
            held[("ConfigMap", doc["metadata"]["name"])] = set(doc.get("data") or {}) | set(doc.get("binaryData") or {})
    return held


def missing(docs: list[Doc]) -> list[str]:
    """The references that nothing rendered answers (a pod would not start: CreateContainerConfigError)."""
    held = keys(docs)
    problems = []
    for ref in references(docs):
        if ref.optional:
            continue
        present = held.get((ref.kind, ref.name))
        if present is None:
            problems.append(f"{ref.owner}: no {ref.kind} {ref.name}")
        elif ref.key is not None and ref.key not in present:
            problems.append(f"{ref.owner}: {ref.kind} {ref.name} has no key {ref.key}")
    return problems
