"""The chart against a real kube-apiserver (tests/helm/kube.py): install, upgrade, rollback and
uninstall for every values set, with Strimzi 0.45's CRDs (kafka.strimzi.io/v1beta2 only) and
Strimzi 1.2's (v1 only), each with and without the Prometheus Operator's CRDs.

`helm install --dry-run=server` sends no object, so every manifest is also created with
`kubectl create --dry-run=server --validate=strict`: an unknown or misplaced field, a bad name or a
missing namespace is then an error, as on a real cluster. The CRDs are the upstream files vendored
in tests/fixtures/crds/.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.kube import KubeApiServer, Manifest, docs_of
from tests.helm.test_chart import CHART, DEFAULT_VALUES

pytestmark = pytest.mark.helm

STRIMZI_CRDS = ("kafkatopics.kafka.strimzi.io", "kafkausers.kafka.strimzi.io")
MONITORING_CRDS = ("servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")
PROMETHEUS_OPERATOR = "prometheus-operator-v0.93.0"


@dataclass(frozen=True)
class Profile:
    strimzi: str
    strimzi_api: str
    prometheus_operator: bool

    @property
    def folders(self) -> tuple[str, ...]:
        return (self.strimzi, PROMETHEUS_OPERATOR) if self.prometheus_operator else (self.strimzi,)


PROFILES = {
    "strimzi-0.45": Profile("strimzi-0.45.2", "kafka.strimzi.io/v1beta2", False),
    "strimzi-0.45+prometheus-operator": Profile("strimzi-0.45.2", "kafka.strimzi.io/v1beta2", True),
    "strimzi-1.2": Profile("strimzi-1.2.0", "kafka.strimzi.io/v1", False),
    "strimzi-1.2+prometheus-operator": Profile("strimzi-1.2.0", "kafka.strimzi.io/v1", True),
}

VALUES_SETS: dict[str, Path | None] = {"default": None} | {
    path.name.removesuffix("-values.yaml"): path for path in sorted((CHART / "ci").glob("*-values.yaml"))
}

RELEASE = "ef"


@dataclass
class Cluster:
    server: KubeApiServer
    profile: Profile


@pytest.fixture(scope="module", params=list(PROFILES))
def cluster(request: pytest.FixtureRequest, kube_apiserver: KubeApiServer) -> Iterator[Cluster]:
    """The API server with exactly this profile's CRDs (pytest groups the tests by profile)."""
    profile = PROFILES[request.param]
    kube_apiserver.delete_crds(STRIMZI_CRDS + MONITORING_CRDS)
    kube_apiserver.apply_crds(profile.folders)
    kube_apiserver.use_cache_dir(request.param)
    yield Cluster(kube_apiserver, profile)


def values_file(name: str) -> dict[str, Any]:
    path = VALUES_SETS[name]
    loaded: dict[str, Any] = yaml.safe_load(path.read_text()) if path else {}
    return loaded


def values_args(name: str) -> list[str]:
    path = VALUES_SETS[name]
    return ["-f", str(path)] if path else []


def server_dry_run(server: KubeApiServer, namespace: str, *args: str) -> list[Manifest]:
    """What helm would install, rendered with the cluster's capabilities."""
    result = server.helm(
        "install", RELEASE, str(CHART), "-n", namespace, "--dry-run=server", "-o", "json", *args
    )
    assert result.returncode == 0, result.stderr
    return docs_of(json.loads(result.stdout)["manifest"])


def strict_create_result(
    server: KubeApiServer, namespace: str, docs: list[Manifest]
) -> subprocess.CompletedProcess[str]:
    """`kubectl create --dry-run=server --validate=strict` of these objects: the API server's
    own verdict on each, fields and names included."""
    manifest = "\n---\n".join(json.dumps(doc) for doc in docs)
    return server.run(
        "kubectl",
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=manifest,
    )


def strict_create(server: KubeApiServer, namespace: str, docs: list[Manifest]) -> None:
    result = strict_create_result(server, namespace, docs)
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), f"the server warned: {result.stderr}"


def config_map_data(server: KubeApiServer, namespace: str, name: str) -> dict[str, str]:
    data: dict[str, str] = json.loads(
        server.kubectl("get", "configmap", name, "-n", namespace, "-o", "json")
    )["data"]
    return data


def assert_no_warnings(result_stderr: str) -> None:
    lines = [
        line for line in result_stderr.splitlines() if "warning" in line.lower() or "unknown field" in line
    ]
    assert not lines, "\n".join(lines)


def assert_service_account_may_do_nothing(server: KubeApiServer, namespace: str, account: str) -> None:
    """As the service account itself (a token the API server issued for it): the pods need no API."""
    token = server.kubectl("create", "token", account, "-n", namespace, "--duration=10m").strip()
    as_account = ["--token", token, "-n", namespace]
    listing = server.kubectl(
        "auth", "can-i", "--list", "--kubeconfig", str(anonymous_kubeconfig(server)), *as_account
    )
    granted = [line.split()[0] for line in listing.splitlines()[1:] if line.strip()]
    resources = sorted(r for r in granted if not r.startswith("["))
    # What every authenticated user may do by default (self reviews), nothing of the chart's own.
    assert set(resources) <= {
        "selfsubjectaccessreviews.authorization.k8s.io",
        "selfsubjectrulesreviews.authorization.k8s.io",
        "selfsubjectreviews.authentication.k8s.io",
    }, listing
    for verb, resource in [
        ("get", "secrets"),
        ("list", "configmaps"),
        ("watch", "pods"),
        ("create", "pods"),
        ("get", "kafkausers.kafka.strimzi.io"),
        ("patch", "kafkatopics.kafka.strimzi.io"),
        ("list", "serviceaccounts"),
        ("create", "serviceaccounts/token"),
    ]:
        result = server.run(
            "kubectl",
            "auth",
            "can-i",
            verb,
            resource,
            "--kubeconfig",
            str(anonymous_kubeconfig(server)),
            *as_account,
        )
        assert result.stdout.strip() == "no", f"{account} may {verb} {resource}"
    # The same question asked by impersonation agrees (a check of the check).
    assert server.run("kubectl", "auth", "can-i", "get", "secrets", "-n", namespace,
                      f"--as=system:serviceaccount:{namespace}:{account}").stdout.strip() == "no"  # fmt: skip


def anonymous_kubeconfig(server: KubeApiServer) -> Path:
    """The server and its CA, no client certificate: the token alone says who asks."""
    path = server.home / "token-kubeconfig"
    if not path.exists():
        ca = server.kubeconfig.parent / "pki" / "ca.crt"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "local",
                            "cluster": {
                                "server": f"https://127.0.0.1:{server.port}",
                                "certificate-authority": str(ca),
                            },
                        }
                    ],
                    "users": [{"name": "token", "user": {}}],
                    "contexts": [{"name": "local", "context": {"cluster": "local", "user": "token"}}],
                    "current-context": "local",
                }
            )
        )
    return path


@pytest.mark.parametrize("values", list(VALUES_SETS))
def test_install_upgrade_rollback_uninstall(cluster: Cluster, values: str) -> None:
    server, profile = cluster.server, cluster.profile
    namespace = server.create_namespace("chart")
    args = values_args(values)

    docs = server_dry_run(server, namespace, *args)
    kinds = {doc["kind"] for doc in docs}
    # The chart writes Strimzi's resources in the one version this cluster serves.
    strimzi = {doc["apiVersion"] for doc in docs if doc["kind"] in ("KafkaTopic", "KafkaUser")}
    assert strimzi == {profile.strimzi_api}
    # ServiceMonitor and PrometheusRule exactly when enabled and the cluster serves them.
    metrics = DEFAULT_VALUES["metrics"] | values_file(values).get("metrics", {})
    for kind, key in (("ServiceMonitor", "serviceMonitor"), ("PrometheusRule", "prometheusRule")):
        enabled = bool(metrics.get(key, {}).get("enabled"))
        assert (kind in kinds) == (enabled and profile.prometheus_operator), kind
    strict_create(server, namespace, docs)

    installed = server.helm("install", RELEASE, str(CHART), "-n", namespace, *args)
    assert installed.returncode == 0, installed.stderr
    assert_no_warnings(installed.stderr)
    expected = sorted(f"{doc['kind']}/{doc['metadata']['name']}".lower() for doc in docs)
    manifest = server.helm("get", "manifest", RELEASE, "-n", namespace).stdout
    in_cluster = server.kubectl("get", "-n", namespace, "-f", "-", "-o", "name", stdin=manifest).split()
    assert (
        sorted(name.split("/", 1)[0].split(".")[0] + "/" + name.split("/", 1)[1] for name in in_cluster)
        == expected
    )

    (account,) = [doc["metadata"]["name"] for doc in docs if doc["kind"] == "ServiceAccount"]
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    assert_service_account_may_do_nothing(server, namespace, account)

    (config,) = [
        doc["metadata"]["name"]
        for doc in docs
        if doc["kind"] == "ConfigMap" and "EVENTFED_LOG_LEVEL" in doc["data"]
    ]
    before = config_map_data(server, namespace, config)["EVENTFED_LOG_LEVEL"]
    upgraded = server.helm("upgrade", RELEASE, str(CHART), "-n", namespace, *args, "--set", "logLevel=DEBUG")
    assert upgraded.returncode == 0, upgraded.stderr
    assert_no_warnings(upgraded.stderr)
    assert before != "DEBUG"
    assert config_map_data(server, namespace, config)["EVENTFED_LOG_LEVEL"] == "DEBUG"

    rolled = server.helm("rollback", RELEASE, "1", "-n", namespace)
    assert rolled.returncode == 0, rolled.stderr
    assert config_map_data(server, namespace, config)["EVENTFED_LOG_LEVEL"] == before
    history = json.loads(server.helm("history", RELEASE, "-n", namespace, "-o", "json").stdout)
    assert [(h["revision"], h["status"]) for h in history] == [
        (1, "superseded"),
        (2, "superseded"),
        (3, "deployed"),
    ]

    uninstalled = server.helm("uninstall", RELEASE, "-n", namespace, "--wait")
    assert uninstalled.returncode == 0, uninstalled.stderr
    assert server.objects_in(namespace) == []
    assert server.cluster_objects_labelled(f"app.kubernetes.io/instance={RELEASE}") == []
    server.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.mark.parametrize("cluster", ["strimzi-1.2"], indirect=True)
def test_a_bad_name_is_refused_before_anything_is_created(cluster: Cluster) -> None:
    server = cluster.server
    namespace = server.create_namespace("badname")
    bad = ("--set", "fullnameOverride=Bad_Name")
    result = server.helm("install", RELEASE, str(CHART), "-n", namespace, *bad)
    assert result.returncode != 0
    assert "fullnameOverride" in result.stderr and "Bad_Name" in result.stderr
    # Past the chart's schema, only the API server knows the name is bad: helm's server-side dry
    # run sends nothing and passes; a strict server-side create and a real install do not.
    unchecked = (*bad, "--skip-schema-validation")
    docs = server_dry_run(server, namespace, *unchecked)
    strict = strict_create_result(server, namespace, docs)
    assert strict.returncode != 0 and "RFC 1123" in strict.stderr, strict.stderr
    real = server.helm(
        "install", RELEASE, str(CHART), "-n", namespace, *unchecked, "--atomic", "--timeout", "60s"
    )
    assert real.returncode != 0 and "Bad_Name" in real.stderr, real.stderr
    assert server.objects_in(namespace) == []
    server.kubectl("delete", "namespace", namespace, "--wait=false")


@pytest.mark.parametrize("cluster", ["strimzi-1.2"], indirect=True)
def test_a_missing_namespace_is_refused(cluster: Cluster) -> None:
    server = cluster.server
    namespace = "eventfed-missing-namespace"
    # helm's server-side dry run does not notice; the strict create and the real install do.
    strict = strict_create_result(server, namespace, server_dry_run(server, namespace))
    assert strict.returncode != 0 and f'namespaces "{namespace}" not found' in strict.stderr, strict.stderr
    real = server.helm("install", RELEASE, str(CHART), "-n", namespace)
    assert real.returncode != 0 and f'namespaces "{namespace}" not found' in real.stderr, real.stderr
    assert server.run("kubectl", "get", "namespace", namespace).returncode != 0
