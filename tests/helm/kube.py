"""A kube-apiserver + etcd of the test session's own (scripts/kube-apiserver), with helm and kubectl
bound to it.

No kubelet and no controllers run: objects are stored and validated (built-in schemas, CRD schemas,
names, namespaces, admission, RBAC) but no pod starts, and a deleted namespace stays Terminating
(the namespace controller would finalise it). Each test works in a namespace of its own.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kube-apiserver"
CRDS = ROOT / "tests" / "fixtures" / "crds"

Manifest = dict[str, Any]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_triple() -> tuple[int, int]:
    """An API server port, and an etcd client port whose next port (etcd's peer port) is free too."""
    for _ in range(200):
        api = random.randint(20000, 29000)
        etcd = random.randint(30000, 39000)
        if _port_free(api) and _port_free(etcd) and _port_free(etcd + 1):
            return api, etcd
    raise RuntimeError("no free loopback ports for the test API server")


def script(*args: str, env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    result = subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/kube-apiserver {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout.strip()


@dataclass
class KubeApiServer:
    """One running API server; `stop()` ends exactly the etcd and kube-apiserver it started."""

    port: int
    etcd_port: int
    kubeconfig: Path
    kubectl_bin: str
    helm_bin: str
    home: Path
    version: str
    started_seconds: float
    _env: dict[str, str] = field(default_factory=dict)
    _tool_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(cls, helm_bin: str, home: Path) -> KubeApiServer:
        kubectl_bin = script("kubectl").splitlines()[-1]
        version = script("version")
        port, etcd_port = free_port_triple()
        env = {"KUBE_APISERVER_PORT": str(port), "KUBE_ETCD_PORT": str(etcd_port)}
        began = time.monotonic()
        script("start", env=env, timeout=180)
        started = time.monotonic() - began
        kubeconfig = Path(script("kubeconfig", env=env))
        server = cls(port, etcd_port, kubeconfig, kubectl_bin, helm_bin, home, version, started, env)
        server.use_cache_dir("initial")
        return server

    def stop(self) -> None:
        run_dir = self.kubeconfig.parent
        pids = [int((run_dir / f"{name}.pid").read_text()) for name in ("kube-apiserver", "etcd")]
        script("stop", env=self._env, timeout=120)
        alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        shutil.rmtree(run_dir, ignore_errors=True)
        assert not alive, f"scripts/kube-apiserver stop left pids {alive} running"

    def use_cache_dir(self, name: str) -> None:
        """Fresh discovery caches: after CRDs change, helm and kubectl must ask the server again."""
        cache = self.home / f"cache-{name}-{uuid.uuid4().hex[:6]}"
        self._tool_env = {
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(cache / "kube"),
            "HELM_CACHE_HOME": str(cache / "helm"),
            "HELM_CONFIG_HOME": str(self.home / "helm-config"),
            "HELM_DATA_HOME": str(self.home / "helm-data"),
            "HOME": str(self.home),
        }

    def run(
        self, tool: str, *args: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        binary = {"kubectl": self.kubectl_bin, "helm": self.helm_bin}[tool]
        extra = ["--cache-dir", self._tool_env["KUBECACHEDIR"]] if tool == "kubectl" else []
        return subprocess.run(
            [binary, *extra, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **self._tool_env},
        )

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        result = self.run("kubectl", *args, stdin=stdin, timeout=timeout)
        assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def helm(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, timeout=timeout)

    def create_namespace(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", name)
        return name

    def apply_crds(self, folders: Iterable[str]) -> None:
        files = [path for folder in folders for path in sorted((CRDS / folder).glob("*.yaml"))]
        for path in files:
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
        names = [yaml.safe_load(path.read_text())["metadata"]["name"] for path in files]
        if names:
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])

    def delete_crds(self, names: Iterable[str]) -> None:
        names = list(names)
        if names:
            self.kubectl(
                "delete", "--ignore-not-found", "--wait=true", "--timeout=90s", *[f"crd/{n}" for n in names]
            )

    def namespaced_resources(self) -> list[str]:
        out = self.kubectl("api-resources", "--namespaced=true", "--verbs=list", "-o", "name")
        # Events are the server's own record of what happened, not objects a chart leaves behind.
        return sorted(r for r in out.split() if r not in ("events", "events.events.k8s.io"))

    def cluster_objects_labelled(self, selector: str) -> list[str]:
        out = self.kubectl("api-resources", "--namespaced=false", "--verbs=list", "-o", "name")
        found = self.kubectl("get", ",".join(out.split()), "-l", selector, "-o", "name")
        return sorted(found.split())

    def objects_in(self, namespace: str) -> list[str]:
        out = self.kubectl("get", ",".join(self.namespaced_resources()), "-n", namespace, "-o", "name")
        return sorted(out.split())


def docs_of(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]
