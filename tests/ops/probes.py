"""An HTTP probe the way the kubelet runs one: a GET with a timeout; a status from 200 to 399 is a success, anything
else (another status, a refused connection, no answer within the timeout) a failure."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import yaml

from tests.ops.catalogue import ROOT

K8S = ROOT / "deploy" / "k8s" / "base"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status: int | None  # None: no HTTP answer at all
    why: str
    seconds: float
    body: dict[str, Any] | None = None


def probe(url: str, timeout_s: float) -> ProbeResult:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read()
    except TimeoutError as error:
        return ProbeResult(False, None, f"timeout: {error}", time.monotonic() - started)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        kind = "timeout" if isinstance(reason, TimeoutError) else "no connection"
        return ProbeResult(False, None, f"{kind}: {reason}", time.monotonic() - started)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    return ProbeResult(200 <= status < 400, status, f"HTTP {status}", time.monotonic() - started, body)


def manifest_probe(deployment: str, kind: str) -> dict[str, Any]:
    """A probe of a Deployment in deploy/k8s/base (e.g. ``worker-deployment.yaml``, ``livenessProbe``)."""
    document = yaml.safe_load((K8S / deployment).read_text())
    (container,) = document["spec"]["template"]["spec"]["containers"]
    return dict(container[kind])
