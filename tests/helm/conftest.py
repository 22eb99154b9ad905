"""The test session's Kubernetes API server, shared by every chart test that needs one."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.helm.kube import ROOT, KubeApiServer


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    helm = subprocess.run(
        [str(ROOT / "scripts" / "helm")], capture_output=True, text=True, timeout=1200, check=False
    )
    if helm.returncode != 0:
        pytest.fail(f"scripts/helm could not provide a helm binary:\n{helm.stderr}")
    try:
        # Builds kube-apiserver and kubectl the first time (about 12 CPU-minutes), then reuses them.
        server = KubeApiServer.start(
            helm.stdout.strip().splitlines()[-1], tmp_path_factory.mktemp("kube-home")
        )
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()
