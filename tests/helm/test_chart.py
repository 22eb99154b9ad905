"""The Helm chart, rendered by the real helm binary (scripts/helm) and checked offline.

Built-in kinds are validated against the Kubernetes OpenAPI schemas shipped by
kubernetes-validate; the custom resources (Strimzi KafkaUser/KafkaTopic, Prometheus Operator
ServiceMonitor) are not in those schemas, so each is checked against a small structural schema
below. The drift tests tie the chart to the code: every EVENTFED_* variable a container gets must
be a setting its subcommand reads, with a value that setting accepts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from bridge.cli import SUBCOMMANDS
from bridge.settings import (
    ALL_SETTINGS,
    VIM_ID_PATTERN,
    ApiSettings,
    CommonSettings,
    ListenerSettings,
    PollerSettings,
    StreamSettings,
    env_names,
    files_elsewhere,
)

pytestmark = pytest.mark.helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "eventfed"
MULTI_VIM_VALUES = CHART / "ci" / "onap-multi-vim-values.yaml"
POLL_MODES_VALUES = CHART / "ci" / "poll-modes-values.yaml"
K8S_VERSION = "1.30.0"
DEFAULT_VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())

SETTINGS_BY_SUBCOMMAND: dict[str, type[CommonSettings]] = {
    "listen": ListenerSettings,
    "stream": StreamSettings,
    "api": ApiSettings,
    "poll": PollerSettings,
}

Manifest = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm() -> str:
    result = subprocess.run(
        [str(ROOT / "scripts" / "helm")], capture_output=True, text=True, timeout=1200, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/helm could not provide a helm binary:\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def value_args(values_files: tuple[Path, ...], sets: tuple[str, ...]) -> list[str]:
    args: list[str] = []
    for path in values_files:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    return args


@pytest.fixture(scope="session")
def render(helm: str) -> Callable[..., list[Manifest]]:
    cache: dict[tuple[Any, ...], list[Manifest]] = {}

    def _render(
        *values_files: Path, sets: tuple[str, ...] = (), release: str = "eventfed", namespace: str = "onap"
    ) -> list[Manifest]:
        key = (values_files, sets, release, namespace)
        if key not in cache:
            result = run_helm(
                helm,
                "template",
                release,
                str(CHART),
                "--namespace",
                namespace,
                *value_args(values_files, sets),
            )
            assert result.returncode == 0, result.stderr
            cache[key] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def default_manifests(render: Callable[..., list[Manifest]]) -> list[Manifest]:
    return render()


@pytest.fixture(scope="session")
def multi_manifests(render: Callable[..., list[Manifest]]) -> list[Manifest]:
    # As on a cluster with the Prometheus Operator, which `helm template` cannot ask.
    return render(MULTI_VIM_VALUES, sets=("metrics.prometheusOperator=always",), release="onap")


@pytest.fixture(scope="session")
def variant_values(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Kafka outside Strimzi with its own credentials, API auth on, one VIM, small flavor."""
    path = tmp_path_factory.mktemp("values") / "no-strimzi.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "strimzi": {"enabled": False},
                "kafka": {
                    "bootstrapServers": "kafka-0.kafka:9093,kafka-1.kafka:9093",
                    "securityProtocol": "SASL_SSL",
                    "sasl": {"username": "eventfed", "passwordSecret": {"name": "kafka-creds", "key": "pw"}},
                    "caSecret": {"name": "kafka-ca", "key": "ca.pem"},
                },
                "vims": [
                    {
                        "cloudOwner": "owner",
                        "cloudRegionId": "r1",
                        "transportUrlSecret": {"name": "r1-rabbit", "key": "url"},
                    }
                ],
                "api": {
                    "auth": {
                        "tokenSecret": {"name": "api-auth", "key": "token"},
                        "basic": {"user": "onap", "passwordSecret": {"name": "api-auth", "key": "basic"}},
                    }
                },
            }
        )
    )
    return path


@pytest.fixture(scope="session")
def variant_manifests(render: Callable[..., list[Manifest]], variant_values: Path) -> list[Manifest]:
    return render(variant_values, release="dev")


@pytest.fixture(scope="session")
def poll_manifests(render: Callable[..., list[Manifest]]) -> list[Manifest]:
    return render(POLL_MODES_VALUES)


@pytest.fixture(scope="session", params=["default", "multi-vim", "no-strimzi", "poll-modes"])
def manifests(request: pytest.FixtureRequest) -> list[Manifest]:
    fixture = {
        "default": "default_manifests",
        "multi-vim": "multi_manifests",
        "no-strimzi": "variant_manifests",
        "poll-modes": "poll_manifests",
    }
    return request.getfixturevalue(fixture[request.param])


def of_kind(docs: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc["kind"] == kind]


def component(docs: list[Manifest], kind: str, name: str) -> list[Manifest]:
    return [
        doc
        for doc in of_kind(docs, kind)
        if doc["metadata"]["labels"].get("app.kubernetes.io/component") == name
    ]


def containers(deployment: Manifest) -> list[Manifest]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: Manifest, docs: list[Manifest]) -> dict[str, Manifest]:
    """name -> env entry, with envFrom ConfigMap keys resolved into plain value entries."""
    config_maps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in of_kind(docs, "ConfigMap")}
    env: dict[str, Manifest] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref, f"unexpected envFrom source {source}"
        assert ref["name"] in config_maps, f"envFrom names a ConfigMap the chart does not render: {ref}"
        for key, value in config_maps[ref["name"]].items():
            env[key] = {"name": key, "value": value}
    for entry in container.get("env", []):
        env[entry["name"]] = entry
    return env


def subcommand(container: Manifest) -> str:
    args = container.get("args") or []
    assert args, f"container {container['name']} has no args: which eventfed subcommand does it run?"
    return str(args[0])


# The VIMs-file contract: a listener or poller reads its VIMs from the file EVENTFED_VIMS_FILE
# names; each entry's keys are the per-VIM settings of ListenerSettings / PollerSettings (a secret
# setting X also as X_file, a file holding it), plus `mode`.
VIMS_FILE_ENV = {"EVENTFED_VIMS_FILE", "EVENTFED_VIMS_RELOAD_SECONDS"}
VIMS_FILE_OWN_KEYS = {"mode"}
SHARDED = {"listen": "listener", "poll": "poller"}


def shard_of(vim_id: str, shards: int) -> int:
    """Rendezvous hashing as the chart's "eventfed.shardOf" does it, written again to check it."""
    return max(range(shards), key=lambda shard: hashlib.sha256(f"{vim_id}/{shard}".encode()).hexdigest())


def shard_deployments(docs: list[Manifest], role: str) -> dict[int, Manifest]:
    """shard index -> Deployment of the listener or poller shards."""
    found: dict[int, Manifest] = {}
    for deployment in component(docs, "Deployment", role):
        shard = int(deployment["spec"]["template"]["metadata"]["labels"]["eventfed.onap.org/shard"])
        assert shard not in found, f"two {role} Deployments for shard {shard}"
        found[shard] = deployment
    return found


def vims_file_of(deployment: Manifest, docs: list[Manifest]) -> list[Manifest]:
    """The VIMs file the shard's container reads: EVENTFED_VIMS_FILE, resolved through its mounts."""
    (container,) = containers(deployment)
    path = PurePosixPath(env_of(container, docs)["EVENTFED_VIMS_FILE"]["value"])
    (mount,) = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == path.parent]
    assert "subPath" not in mount, "a subPath mount is never updated: the process could not hot-reload"
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    (config_map,) = [
        cm for cm in of_kind(docs, "ConfigMap") if cm["metadata"]["name"] == volume["configMap"]["name"]
    ]
    entries: list[Manifest] = yaml.safe_load(config_map["data"][path.name])["vims"]
    return entries


def vims_by_shard(docs: list[Manifest], role: str) -> dict[int, list[Manifest]]:
    return {shard: vims_file_of(d, docs) for shard, d in shard_deployments(docs, role).items()}


def entries_by_vim(docs: list[Manifest], role: str) -> dict[str, Manifest]:
    found: dict[str, Manifest] = {}
    for entries in vims_by_shard(docs, role).values():
        for entry in entries:
            assert entry["vim_id"] not in found, f"VIM {entry['vim_id']} in two {role} shards"
            found[entry["vim_id"]] = entry
    return found


def secret_file(deployment: Manifest, path: str) -> tuple[str, str]:
    """(Secret name, key) a file path in the shard's pod comes from; the mount must be read-only."""
    (container,) = containers(deployment)
    file = PurePosixPath(path)
    mounts = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) in file.parents]
    assert len(mounts) == 1, f"{path} is not in exactly one mount: {mounts}"
    assert mounts[0].get("readOnly") is True, f"{mounts[0]} must be read-only"
    (volume,) = [
        v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mounts[0]["name"]
    ]
    relative = str(file.relative_to(mounts[0]["mountPath"]))
    sources = (
        [volume["secret"] | {"name": volume["secret"]["secretName"]}]
        if "secret" in volume
        else [source["secret"] for source in volume["projected"]["sources"]]
    )
    found = [
        (source["name"], item["key"])
        for source in sources
        for item in source["items"]
        if item["path"] == relative
    ]
    assert len(found) == 1, f"{path}: {found}"
    return found[0]


# --------------------------------------------------------------------------------------------
# Lint and schema validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values", [None, MULTI_VIM_VALUES, POLL_MODES_VALUES], ids=["default", "multi-vim", "poll-modes"]
)
def test_lint_strict(helm: str, values: Path | None) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))
    assert result.returncode == 0, result.stdout + result.stderr


CRD_SCHEMAS: dict[str, Manifest] = {
    "KafkaUser": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
            "metadata": {
                "type": "object",
                "required": ["name", "labels"],
                "properties": {"labels": {"type": "object", "required": ["strimzi.io/cluster"]}},
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["authentication", "authorization"],
                "properties": {
                    "authentication": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"type": {"const": "scram-sha-512"}},
                    },
                    "authorization": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "acls"],
                        "properties": {
                            "type": {"const": "simple"},
                            "acls": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["resource", "operations"],
                                    "properties": {
                                        "resource": {
                                            "type": "object",
                                            "additionalProperties": False,
                                            "required": ["type"],
                                            "properties": {
                                                "type": {
                                                    "enum": ["topic", "group", "cluster", "transactionalId"]
                                                },
                                                "name": {"type": "string", "minLength": 1},
                                                "patternType": {"enum": ["literal", "prefix"]},
                                            },
                                        },
                                        "operations": {
                                            "type": "array",
                                            "minItems": 1,
                                            "uniqueItems": True,
                                            "items": {
                                                "enum": [
                                                    "Read",
                                                    "Write",
                                                    "Create",
                                                    "Delete",
                                                    "Alter",
                                                    "Describe",
                                                    "ClusterAction",
                                                    "AlterConfigs",
                                                    "DescribeConfigs",
                                                    "IdempotentWrite",
                                                    "All",
                                                ]
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "KafkaTopic": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "kafka.strimzi.io/v1beta2"},
            "metadata": {
                "type": "object",
                "required": ["name", "labels"],
                "properties": {
                    "name": {
                        "type": "string",
                        "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                        "maxLength": 253,
                    },
                    "labels": {"type": "object", "required": ["strimzi.io/cluster"]},
                },
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["topicName", "partitions", "replicas"],
                "properties": {
                    "topicName": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,249}$"},
                    "partitions": {"type": "integer", "minimum": 1},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                    "config": {
                        "type": "object",
                        "additionalProperties": {"type": ["string", "integer", "number", "boolean"]},
                    },
                },
            },
        },
    },
    "ServiceMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {
                        "type": "object",
                        "required": ["matchLabels"],
                        "properties": {"matchLabels": {"type": "object", "minProperties": 1}},
                    },
                    "namespaceSelector": {"type": "object"},
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["port", "path"],
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string", "pattern": "^/"},
                                "interval": {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h))+$"},
                                "scrapeTimeout": {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h))+$"},
                            },
                        },
                    },
                },
            },
        },
    },
}


# The full PrometheusRule schema is the API server test's (tests/helm/test_apiserver.py); its
# patterns are Go regular expressions, which jsonschema cannot compile.
CRD_SCHEMAS["PrometheusRule"] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr"],
                                    "properties": {"expr": {"type": "string", "minLength": 1}},
                                },
                            }
                        },
                    },
                }
            },
        },
    },
}


def test_every_manifest_is_valid(manifests: list[Manifest]) -> None:
    for doc in manifests:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CRD_SCHEMAS:
            jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{where}: {path}: {exc.message}")


def test_standard_labels(manifests: list[Manifest]) -> None:
    for doc in manifests:
        labels = doc["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ):
            assert key in labels, f"{doc['kind']}/{doc['metadata']['name']} lacks label {key}"


def test_kinds(default_manifests: list[Manifest], multi_manifests: list[Manifest]) -> None:
    kinds = Counter(doc["kind"] for doc in default_manifests)
    # No VIMs by default: stream and API only, plus six topics (five own, one subscription).
    assert kinds["Deployment"] == 2
    assert kinds["KafkaTopic"] == 6
    assert kinds["KafkaUser"] == 1
    assert kinds["ServiceMonitor"] == 0
    multi = Counter(doc["kind"] for doc in multi_manifests)
    # Stream, API and one listener shard serving the three VIMs.
    assert multi["Deployment"] == 3
    assert multi["ServiceMonitor"] == 1
    assert multi["PrometheusRule"] == 1
    assert multi["PodDisruptionBudget"] == 2
    names = [f"{doc['kind']}/{doc['metadata']['name']}" for doc in multi_manifests]
    assert len(names) == len(set(names)), "two objects share a kind and name"


# --------------------------------------------------------------------------------------------
# Pods: security, probes, volumes
# --------------------------------------------------------------------------------------------


def test_restricted_pod_security(manifests: list[Manifest]) -> None:
    for deployment in of_kind(manifests, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        name = deployment["metadata"]["name"]
        pod_sc = pod.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, name
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        assert pod.get("enableServiceLinks") is False, name
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(key), f"{name}: {key}"
        for container in containers(deployment):
            where = f"{name}/{container['name']}"
            sc = container.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("privileged", False) is False, where
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type") == "RuntimeDefault"
            assert container.get("resources", {}).get("requests"), f"{where}: no resource requests"
            mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: no writable /tmp on a read-only root filesystem"


def test_probes(manifests: list[Manifest]) -> None:
    for deployment in of_kind(manifests, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            liveness = container.get("livenessProbe", {}).get("httpGet")
            readiness = container.get("readinessProbe", {}).get("httpGet")
            assert liveness and liveness["path"] == "/healthz", where
            assert readiness and readiness["path"] == "/readyz", where
            for probe in (liveness, readiness):
                assert probe["port"] in ports, f"{where}: probe port {probe['port']} is not a container port"
            expected = {"api": ("http", 8080)}.get(subcommand(container), ("metrics", 9100))
            assert liveness["port"] == expected[0] and ports[expected[0]] == expected[1], where


def test_stream_volumes(manifests: list[Manifest]) -> None:
    (stream,) = component(manifests, "Deployment", "stream")
    (container,) = stream["spec"]["template"]["spec"]["containers"]
    env = env_of(container, manifests)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in stream["spec"]["template"]["spec"]["volumes"]}
    # Directory mount, no subPath: kubelet swaps the files in place when the ConfigMap changes.
    subs = mounts["/etc/eventfed"]
    assert "subPath" not in subs
    assert "configMap" in volumes[subs["name"]]
    assert env["EVENTFED_SUBSCRIPTIONS_FILE"]["value"] == "/etc/eventfed/subscriptions.yaml"
    data_dir = env["EVENTFED_DATA_DIR"]["value"]
    assert "emptyDir" in volumes[mounts[data_dir]["name"]]


def test_checksum_follows_env_config_not_subscriptions(render: Callable[..., list[Manifest]]) -> None:
    def checksums(*sets: str) -> dict[str, str]:
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for d in of_kind(render(sets=sets), "Deployment")
        }

    base = checksums()
    assert (
        checksums(
            "subscriptions[0].name=other",
            "subscriptions[0].sink.type=kafka",
            "subscriptions[0].sink.topic=other.topic",
        )
        == base
    )
    changed = checksums("logLevel=DEBUG")
    assert all(changed[name] != base[name] for name in base)


# --------------------------------------------------------------------------------------------
# VIMs, topics, ACLs
# --------------------------------------------------------------------------------------------


def test_each_listening_vim_in_one_shard_file_with_its_secret(
    multi_manifests: list[Manifest], default_manifests: list[Manifest]
) -> None:
    vims = yaml.safe_load(MULTI_VIM_VALUES.read_text())["vims"]
    shards = shard_deployments(multi_manifests, "listener")
    entries = entries_by_vim(multi_manifests, "listener")
    assert set(entries) == {f"{v['cloudOwner']}_{v['cloudRegionId']}" for v in vims}
    for vim in vims:
        vim_id = f"{vim['cloudOwner']}_{vim['cloudRegionId']}"
        assert re.match(VIM_ID_PATTERN, vim_id)
        shard = shard_of(vim_id, 1)
        assert vim_id in {e["vim_id"] for e in vims_file_of(shards[shard], multi_manifests)}
        entry = entries[vim_id]
        assert entry["mode"] == "listen"
        assert entry["transport_url_file"] == f"/etc/eventfed/vim-secrets/{vim_id}/transport-url"
        secret = vim["transportUrlSecret"]
        assert secret_file(shards[shard], entry["transport_url_file"]) == (secret["name"], secret["key"])
        assert (entry["exchange"], entry["pool"], entry["topics"]) == (
            vim.get("exchange", "nova"),
            vim.get("pool", "eventfed"),
            vim.get("topics", DEFAULT_VALUES["listener"]["topics"]),
        )
    # One shard, two pods (listener.podsPerShard).
    assert {i: d["spec"]["replicas"] for i, d in shards.items()} == {0: 2}
    (container,) = containers(shards[0])
    assert subcommand(container) == "listen"
    assert component(default_manifests, "Deployment", "listener") == []


def test_one_vim_is_the_one_entry_file_of_one_listener(variant_manifests: list[Manifest]) -> None:
    """The single-VIM values: one listener pod, the VIM's settings as its environment had them."""
    (deployment,) = component(variant_manifests, "Deployment", "listener")
    assert deployment["metadata"]["name"] == "dev-eventfed-listener-0"
    assert deployment["spec"]["replicas"] == 1
    (entry,) = vims_file_of(deployment, variant_manifests)
    assert entry == {
        "vim_id": "owner_r1",
        "mode": "listen",
        "transport_url_file": "/etc/eventfed/vim-secrets/owner_r1/transport-url",
        "exchange": "nova",
        "topics": ["notifications", "versioned_notifications"],
        "pool": "eventfed",
        "durable_queues": False,
    }
    assert secret_file(deployment, entry["transport_url_file"]) == ("r1-rabbit", "url")
    assert component(variant_manifests, "Deployment", "poller") == []


def test_queue_durability_per_vim_with_the_listener_default(render: Callable[..., list[Manifest]]) -> None:
    def durability(docs: list[Manifest]) -> dict[str, bool]:
        return {vim: entry["durable_queues"] for vim, entry in entries_by_vim(docs, "listener").items()}

    vims = (
        "vims[0].cloudOwner=o",
        "vims[0].cloudRegionId=a",
        "vims[0].transportUrlSecret.name=s",
        "vims[0].transportUrlSecret.key=k",
        "vims[1].cloudOwner=o",
        "vims[1].cloudRegionId=b",
        "vims[1].transportUrlSecret.name=s",
        "vims[1].transportUrlSecret.key=k",
    )
    assert durability(render(sets=vims)) == {"o_a": False, "o_b": False}
    # A VIM's own replicas (pods per VIM, as before shards) raises its shard's pods, never lowers them.
    pods = {i: d["spec"]["replicas"] for i, d in shard_deployments(render(sets=vims), "listener").items()}
    assert pods == {0: 1}
    raised = render(sets=(*vims, "vims[1].replicas=3", "vims[0].replicas=0"))
    assert {i: d["spec"]["replicas"] for i, d in shard_deployments(raised, "listener").items()} == {0: 3}
    # An explicit value wins over the default, for the listener and for one VIM.
    assert durability(render(sets=(*vims, "vims[1].durableQueues=true"))) == {"o_a": False, "o_b": True}
    assert durability(render(sets=(*vims, "listener.durableQueues=false", "vims[0].durableQueues=true"))) == {
        "o_a": True,
        "o_b": False,
    }


def test_vim_modes_give_listeners_and_pollers(poll_manifests: list[Manifest]) -> None:
    vims = yaml.safe_load(POLL_MODES_VALUES.read_text())["vims"]
    modes = {f"{v['cloudOwner']}_{v['cloudRegionId']}": v.get("mode", "listen") for v in vims}
    assert sorted(modes.values()) == ["both", "listen", "poll"]
    listened = entries_by_vim(poll_manifests, "listener")
    polled = entries_by_vim(poll_manifests, "poller")
    assert set(listened) == {vim for vim, mode in modes.items() if mode in ("listen", "both")}
    assert set(polled) == {vim for vim, mode in modes.items() if mode in ("poll", "both")}
    # Each process is given the mode it serves.
    assert {e["mode"] for e in listened.values()} == {"listen"} and {e["mode"] for e in polled.values()} == {
        "poll"
    }
    pollers = shard_deployments(poll_manifests, "poller")
    for deployment in pollers.values():
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
        (container,) = containers(deployment)
        assert subcommand(container) == "poll"
    (shard,) = pollers.values()
    keystone = polled["CloudOwner_RegionTwo"]
    assert keystone["nova_auth"] == "keystone"
    assert secret_file(shard, keystone["os_password_file"]) == ("vim-regiontwo-keystone", "password")
    assert secret_file(shard, keystone["os_cacert"]) == ("vim-regiontwo-ca", "ca.crt")
    assert keystone["os_interface"] == "internal" and keystone["os_region_name"] == "RegionTwo"
    assert keystone["poll_interval"] == 30
    assert keystone["poll_overlap_seconds"] == 60  # the chart's default
    token = polled["edge-owner_edge_site_7"]
    assert token["nova_auth"] == "token"
    assert secret_file(shard, token["nova_token_file"]) == ("vim-edge-site-7-nova", "token")
    assert (token["poll_interval"], token["poll_overlap_seconds"]) == (300, 120)
    assert "os_auth_url" not in token and "nova_token_file" not in keystone


def test_polling_adds_its_checkpoint_topic_acl_and_metrics_service(
    poll_manifests: list[Manifest], multi_manifests: list[Manifest]
) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    checkpoint = values["kafka"]["topics"]["pollCheckpoints"]["name"]
    topic = topics_by_name(poll_manifests)[checkpoint]["spec"]
    assert topic["partitions"] == 1 and topic["config"]["cleanup.policy"] == "compact"
    assert acl_table(poll_manifests)[("topic", "literal", checkpoint)] == {
        "Create",
        "Describe",
        "Read",
        "Write",
    }
    assert component(poll_manifests, "Service", "poller")
    pollers = component(poll_manifests, "Deployment", "poller")
    for deployment in pollers:
        env = env_of(containers(deployment)[0], poll_manifests)
        assert env["EVENTFED_POLL_CHECKPOINT_TOPIC"]["value"] == checkpoint
    # Without a polled VIM, none of it.
    assert checkpoint not in topics_by_name(multi_manifests)
    assert ("topic", "literal", checkpoint) not in acl_table(multi_manifests)
    assert component(multi_manifests, "Service", "poller") == []


def topics_by_name(docs: list[Manifest]) -> dict[str, Manifest]:
    return {doc["spec"]["topicName"]: doc for doc in of_kind(docs, "KafkaTopic")}


def configured(docs: list[Manifest]) -> dict[str, str]:
    (config,) = [cm for cm in of_kind(docs, "ConfigMap") if "EVENTFED_RAW_TOPIC" in cm.get("data", {})]
    return dict(config["data"])


def subscription_sink_topics(docs: list[Manifest]) -> set[str]:
    (cm,) = [cm for cm in of_kind(docs, "ConfigMap") if "subscriptions.yaml" in cm.get("data", {})]
    subs = yaml.safe_load(cm["data"]["subscriptions.yaml"])["subscriptions"]
    return {sub["sink"]["topic"] for sub in subs}


@pytest.mark.parametrize("fixture", ["default_manifests", "multi_manifests"])
def test_topics(fixture: str, request: pytest.FixtureRequest) -> None:
    docs: list[Manifest] = request.getfixturevalue(fixture)
    topics = topics_by_name(docs)
    env = configured(docs)
    own = {env[f"EVENTFED_{role}_TOPIC"] for role in ("RAW", "EVENTS", "STATE", "DLQ", "FLEET_PARTS")}
    existing = set(DEFAULT_VALUES["kafka"]["existingTopics"])
    assert set(topics) == own | (subscription_sink_topics(docs) - existing)
    for name, topic in topics.items():
        policy = topic["spec"].get("config", {}).get("cleanup.policy", "delete")
        assert policy == ("compact" if name == env["EVENTFED_STATE_TOPIC"] else "delete"), name
        assert int(topic["spec"]["config"]["min.insync.replicas"]) <= topic["spec"]["replicas"]
    # The dead-letter topic may have fewer partitions; everything the workers consume or key by
    # VM has the workers' partition count.
    partitions = {t["spec"]["partitions"] for name, t in topics.items() if name != env["EVENTFED_DLQ_TOPIC"]}
    (stream,) = component(docs, "Deployment", "stream")
    stream_env = env_of(stream["spec"]["template"]["spec"]["containers"][0], docs)
    assert partitions == {int(stream_env["EVENTFED_PARTITIONS"]["value"])}
    assert stream["spec"]["replicas"] <= min(partitions)


@pytest.mark.parametrize("fixture", ["default_manifests", "multi_manifests"])
def test_kafka_topics_match_what_eventfed_topics_would_create(
    fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The KafkaTopics carry the partitions and configs bridge.topic_admin gives the same topics."""
    from bridge.topic_admin import core_topics

    docs: list[Manifest] = request.getfixturevalue(fixture)
    (stream,) = component(docs, "Deployment", "stream")
    settings = settings_from_env(
        stream["spec"]["template"]["spec"]["containers"][0], docs, StreamSettings, monkeypatch
    )
    topics = topics_by_name(docs)
    for spec in core_topics(settings):
        topic = topics[spec.name]["spec"]
        assert topic["partitions"] == spec.partitions, spec.name
        assert topic["replicas"] == settings.replication_factor, spec.name
        config = {key: str(value) for key, value in topic.get("config", {}).items()}
        assert spec.config.items() <= config.items(), spec.name


def test_subscriptions_configmap_is_what_the_worker_loads(manifests: list[Manifest]) -> None:
    from streams.subscriptions import load_subscriptions

    (cm,) = [cm for cm in of_kind(manifests, "ConfigMap") if "subscriptions.yaml" in cm.get("data", {})]
    loaded = load_subscriptions(cm["data"]["subscriptions.yaml"], source="chart")
    assert loaded, "the chart ships no example subscription"
    assert {s.sink.topic for s in loaded} == subscription_sink_topics(manifests)


def acl_table(docs: list[Manifest]) -> dict[tuple[str, str, str], set[str]]:
    (user,) = of_kind(docs, "KafkaUser")
    table: dict[tuple[str, str, str], set[str]] = {}
    for acl in user["spec"]["authorization"]["acls"]:
        res = acl["resource"]
        key = (res["type"], res.get("patternType", "literal"), res.get("name", ""))
        assert key not in table, f"ACL for {key} appears twice"
        table[key] = set(acl["operations"])
    return table


@pytest.mark.parametrize("fixture", ["default_manifests", "multi_manifests"])
def test_kafka_user_acls_are_exactly_the_apps(fixture: str, request: pytest.FixtureRequest) -> None:
    docs: list[Manifest] = request.getfixturevalue(fixture)
    env = configured(docs)
    (stream,) = component(docs, "Deployment", "stream")
    app_id = env_of(stream["spec"]["template"]["spec"]["containers"][0], docs)["EVENTFED_APP_ID"]["value"]
    expected = {
        # Create on the two topics Faust declares: the agent's source and the table's changelog.
        ("topic", "literal", env["EVENTFED_RAW_TOPIC"]): {"Create", "Describe", "Read", "Write"},
        ("topic", "literal", env["EVENTFED_DLQ_TOPIC"]): {"Describe", "Write"},
        ("topic", "literal", env["EVENTFED_EVENTS_TOPIC"]): {"Describe", "Write"},
        ("topic", "literal", env["EVENTFED_STATE_TOPIC"]): {"Create", "Describe", "Read", "Write"},
        ("topic", "literal", env["EVENTFED_FLEET_PARTS_TOPIC"]): {"Create", "Describe", "Read", "Write"},
        ("topic", "prefix", f"{app_id}-"): {"Create", "Describe", "DescribeConfigs", "Read", "Write"},
        ("group", "literal", app_id): {"Describe", "Read"},
    }
    for topic in subscription_sink_topics(docs):
        expected[("topic", "literal", topic)] = {"Describe", "Write"}
    assert acl_table(docs) == expected
    (user,) = of_kind(docs, "KafkaUser")
    assert env["EVENTFED_KAFKA_SASL_USERNAME"] == user["metadata"]["name"]


def test_strimzi_cluster_label(default_manifests: list[Manifest], multi_manifests: list[Manifest]) -> None:
    # ONAP's cluster whatever eventfed's release is called (the default manifests' is "eventfed").
    for docs, cluster in ((default_manifests, "onap-strimzi"), (multi_manifests, "onap-strimzi")):
        for doc in of_kind(docs, "KafkaUser") + of_kind(docs, "KafkaTopic"):
            assert doc["metadata"]["labels"]["strimzi.io/cluster"] == cluster


def test_kafka_bootstrap_and_cluster_come_from_onaps_release_not_eventfeds(
    render: Callable[..., list[Manifest]],
) -> None:
    for release in ("onap", "onap-eventfed"):
        docs = render(release=release)
        assert configured(docs)["EVENTFED_KAFKA_BOOTSTRAP_SERVERS"] == "onap-strimzi-kafka-bootstrap:9092"
        assert {d["metadata"]["labels"]["strimzi.io/cluster"] for d in of_kind(docs, "KafkaUser")} == {
            "onap-strimzi"
        }
    docs = render(
        sets=("global.kafkaBootstrap=kafka:9092", "global.onapRelease=dev"), release="onap-eventfed"
    )
    assert configured(docs)["EVENTFED_KAFKA_BOOTSTRAP_SERVERS"] == "dev-kafka:9092"
    assert {d["metadata"]["labels"]["strimzi.io/cluster"] for d in of_kind(docs, "KafkaUser")} == {
        "dev-strimzi"
    }


def test_sasl_password_from_the_kafka_users_secret(default_manifests: list[Manifest]) -> None:
    (user,) = of_kind(default_manifests, "KafkaUser")
    for deployment in of_kind(default_manifests, "Deployment"):
        for container in containers(deployment):
            ref = env_of(container, default_manifests)["EVENTFED_KAFKA_SASL_PASSWORD"]["valueFrom"]
            assert ref["secretKeyRef"] == {"name": user["metadata"]["name"], "key": "password"}


def test_strimzi_off(variant_manifests: list[Manifest]) -> None:
    assert not of_kind(variant_manifests, "KafkaUser")
    assert not of_kind(variant_manifests, "KafkaTopic")
    env = configured(variant_manifests)
    assert env["EVENTFED_KAFKA_BOOTSTRAP_SERVERS"] == "kafka-0.kafka:9093,kafka-1.kafka:9093"
    assert env["EVENTFED_KAFKA_SASL_USERNAME"] == "eventfed"
    for deployment in of_kind(variant_manifests, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        (ca,) = [v for v in pod["volumes"] if "secret" in v]
        assert ca["secret"]["secretName"] == "kafka-ca"
        (container,) = pod["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == ca["name"])
        assert env["EVENTFED_KAFKA_SSL_CA_LOCATION"] == f"{mount['mountPath']}/ca.crt"


def test_flavors(render: Callable[..., list[Manifest]], multi_manifests: list[Manifest]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def resources(docs: list[Manifest]) -> dict[str, Any]:
        return {subcommand(c): c["resources"] for d in of_kind(docs, "Deployment") for c in containers(d)}

    large, small = values["resources"]["large"], values["resources"]["small"]
    assert resources(multi_manifests) == {
        "listen": large["listener"],
        "stream": large["stream"],
        "api": large["api"],
    }
    # The chart's own `flavor` wins over global.flavor.
    overridden = resources(render(sets=("global.flavor=large", "flavor=small")))
    assert overridden == {"stream": small["stream"], "api": small["api"]}


def test_pod_disruption_budgets(manifests: list[Manifest]) -> None:
    budgets = {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
        for doc in of_kind(manifests, "PodDisruptionBudget")
    }
    assert set(budgets) == {"stream", "api"}
    for name, budget in budgets.items():
        (deployment,) = component(manifests, "Deployment", name)
        assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_service_monitor_scrapes_every_metrics_port(multi_manifests: list[Manifest]) -> None:
    (monitor,) = of_kind(multi_manifests, "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    scraped = set()
    for service in of_kind(multi_manifests, "Service"):
        if selector.items() <= service["metadata"]["labels"].items():
            named = {p["name"] for p in service["spec"]["ports"]} & ports
            assert named, f"{service['metadata']['name']} is selected but has no scraped port"
            scraped.add(service["metadata"]["labels"]["app.kubernetes.io/component"])
    assert scraped == {"listener", "stream", "api"}
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_api_service(manifests: list[Manifest]) -> None:
    (service,) = component(manifests, "Service", "api")
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8080 and port["targetPort"] == "http"
    (api,) = component(manifests, "Deployment", "api")
    assert service["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]


def test_multi_vim_example_is_what_it_says() -> None:
    values = yaml.safe_load(MULTI_VIM_VALUES.read_text())
    assert len(values["vims"]) == 3
    # ONAP's Kafka as OOM deploys it: the chart's defaults (plain listener, SCRAM), nothing else.
    assert "bootstrapServers" not in values["kafka"] and "securityProtocol" not in values["kafka"]
    assert values["global"]["onapRelease"] == "onap"
    assert values["global"]["flavor"] == "large"
    assert values["metrics"]["serviceMonitor"]["enabled"] is True


@pytest.mark.parametrize("case", ["default", "multi-vim", "no-strimzi"])
def test_notes_render(
    helm: str, tmp_path: Path, case: str, variant_values: Path, multi_manifests: list[Manifest]
) -> None:
    """`helm template` skips NOTES.txt, so render a copy of it as an ordinary template."""
    chart = tmp_path / "eventfed"
    shutil.copytree(CHART, chart)
    (chart / "NOTES.src").write_text((chart / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "notes-check.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: |\n"
        '    {{- tpl (.Files.Get "NOTES.src") . | nindent 4 }}\n'
    )
    values = {
        "default": [],
        "multi-vim": ["-f", str(MULTI_VIM_VALUES)],
        "no-strimzi": ["-f", str(variant_values)],
    }
    result = run_helm(
        helm, "template", "onap", str(chart), "--show-only", "templates/notes-check.yaml", *values[case]
    )
    assert result.returncode == 0, result.stderr
    notes = yaml.safe_load(result.stdout)["data"]["notes"]
    assert "onap-eventfed-api" in notes
    if case == "multi-vim":
        for listener in component(multi_manifests, "Deployment", "listener"):
            assert f"deployment/{listener['metadata']['name']}" in notes


# --------------------------------------------------------------------------------------------
# Drift: the chart against bridge/settings.py and bridge/cli.py
# --------------------------------------------------------------------------------------------


def is_secret_field(settings_cls: type[CommonSettings], env_name: str) -> bool:
    field = settings_cls.model_fields[env_name.removeprefix("EVENTFED_").lower()]
    return SecretStr in getattr(field.annotation, "__args__", (field.annotation,))


def app_containers(docs: list[Manifest]) -> Iterator[tuple[str, Manifest, type[CommonSettings]]]:
    for deployment in of_kind(docs, "Deployment"):
        for container in containers(deployment):
            command = subcommand(container)
            assert command in SUBCOMMANDS, f"{deployment['metadata']['name']}: unknown subcommand {command}"
            assert command in SETTINGS_BY_SUBCOMMAND, f"no settings class known for `eventfed {command}`"
            where = f"{deployment['metadata']['name']}/{container['name']}"
            yield where, container, SETTINGS_BY_SUBCOMMAND[command]


def test_settings_classes_are_all_known() -> None:
    assert set(SETTINGS_BY_SUBCOMMAND.values()) <= set(ALL_SETTINGS)
    assert set(SETTINGS_BY_SUBCOMMAND) <= set(SUBCOMMANDS)


def test_env_names_are_settings_the_subcommand_reads(manifests: list[Manifest]) -> None:
    for where, container, settings_cls in app_containers(manifests):
        env = env_of(container, manifests)
        ours = {name for name in env if name.startswith("EVENTFED_")}
        per_vim = {f"EVENTFED_{key.upper()}" for key in PER_VIM_KEYS.get(settings_cls, set())}
        if per_vim:
            # Listeners and pollers get their VIMs from the VIMs file, nothing of a VIM in the env.
            assert "EVENTFED_VIMS_FILE" in ours, where
            assert not ours & per_vim, (
                f"{where}: per-VIM settings in the environment {sorted(ours & per_vim)}"
            )
        unknown = ours - env_names(settings_cls) - (VIMS_FILE_ENV if per_vim else set())
        assert not unknown, f"{where} sets {sorted(unknown)}, which {settings_cls.__name__} does not read"
        fields = settings_cls.model_fields
        required = {f"EVENTFED_{name.upper()}" for name, field in fields.items() if field.is_required()}
        assert required - per_vim <= ours, (
            f"{where} lacks required settings {sorted(required - per_vim - ours)}"
        )


# The per-VIM settings a VIMs file entry may carry (the rest stay process-wide, in the environment).
PER_VIM_KEYS: dict[type[CommonSettings], set[str]] = {
    ListenerSettings: {
        "vim_id", "transport_url", "exchange", "topics", "pool", "durable_queues",
        "rabbit_ssl", "rabbit_ssl_ca_file", "rabbit_ssl_cert_file", "rabbit_ssl_key_file",
        "sample_topics", "sample_exchange",
    },
    PollerSettings: {
        "vim_id", "nova_auth", "nova_endpoint", "nova_token", "os_auth_url", "os_username", "os_password",
        "os_project_name", "os_user_domain_name", "os_project_domain_name", "os_region_name", "os_interface",
        "os_cacert", "nova_api_version", "poll_interval", "poll_overlap_seconds", "poll_lookback_seconds",
        "poll_page_size",
    },
}  # fmt: skip


def test_vims_file_entries_are_per_vim_settings_of_the_subcommand(manifests: list[Manifest]) -> None:
    for where, _container, settings_cls in app_containers(manifests):
        if settings_cls not in PER_VIM_KEYS:
            continue
        (deployment,) = [
            d for d in of_kind(manifests, "Deployment") if where.startswith(d["metadata"]["name"] + "/")
        ]
        entries = vims_file_of(deployment, manifests)
        assert entries, f"{where}: a shard without VIMs"
        for entry in entries:
            for key in set(entry) - VIMS_FILE_OWN_KEYS:
                setting = (
                    key.removesuffix("_file")
                    if key.endswith("_file") and key not in settings_cls.model_fields
                    else key
                )
                assert setting in PER_VIM_KEYS[settings_cls], (
                    f"{where}: {entry['vim_id']}: {key} is no per-VIM setting"
                )
                if setting != key:
                    assert is_secret_field(settings_cls, f"EVENTFED_{setting.upper()}"), f"{where}: {key}"
                    # A Secret's file comes from a read-only mount of that Secret.
                    secret_file(deployment, entry[key])
            for key in ("rabbit_ssl_ca_file", "rabbit_ssl_cert_file", "rabbit_ssl_key_file", "os_cacert"):
                if key in entry:
                    secret_file(deployment, entry[key])


def test_secrets_are_wired_to_secret_settings(manifests: list[Manifest]) -> None:
    for where, container, settings_cls in app_containers(manifests):
        for name, entry in env_of(container, manifests).items():
            if name not in env_names(settings_cls):
                continue  # an unknown name is test_env_names_are_settings_the_subcommand_reads' failure
            from_secret = "secretKeyRef" in entry.get("valueFrom", {})
            secret_field = is_secret_field(settings_cls, name)
            assert from_secret == secret_field, (
                f"{where}: {name} is {'a Secret reference' if from_secret else 'a plain value'} "
                f"but the setting is {'secret' if secret_field else 'not secret'}"
            )


def test_stuck_after_renders_as_the_setting(
    default_manifests: list[Manifest], multi_manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    (stream,) = component(multi_manifests, "Deployment", "stream")
    (container,) = stream["spec"]["template"]["spec"]["containers"]
    env = env_of(container, multi_manifests)
    assert env["EVENTFED_STUCK_AFTER"]["value"] == "DELETE=15m,LIVE_MIGRATION=5400,SNAPSHOT=2h,default=45m"
    settings = settings_from_env(container, multi_manifests, StreamSettings, monkeypatch)
    assert settings.stuck_after["DELETE"] == 900 and settings.stuck_after["LIVE_MIGRATION"] == 5400
    assert settings.stuck_after["SNAPSHOT"] == 7200 and settings.stuck_after["default"] == 2700
    # Not set: the worker's built-in times.
    (stream,) = component(default_manifests, "Deployment", "stream")
    assert "EVENTFED_STUCK_AFTER" not in env_of(
        stream["spec"]["template"]["spec"]["containers"][0], default_manifests
    )


def one_entry_env(entry: Manifest, settings_cls: type[CommonSettings]) -> dict[str, str]:
    """A VIMs file entry as the single-VIM environment it stands for: each key the setting of
    that name, a secret's X_file the secret X itself (a stand-in here)."""
    env: dict[str, str] = {}
    for key, value in entry.items():
        if key in VIMS_FILE_OWN_KEYS:
            continue
        if key.endswith("_file") and key not in settings_cls.model_fields:
            env[f"EVENTFED_{key.removesuffix('_file').upper()}"] = "rabbit://user:secret@rabbitmq:5672/"
        elif isinstance(value, list):
            env[f"EVENTFED_{key.upper()}"] = ",".join(str(item) for item in value)
        elif isinstance(value, bool):
            env[f"EVENTFED_{key.upper()}"] = str(value).lower()
        else:
            env[f"EVENTFED_{key.upper()}"] = str(value)
    return env


def settings_from_env(
    container: Manifest,
    docs: list[Manifest],
    settings_cls: type[CommonSettings],
    monkeypatch: pytest.MonkeyPatch,
    vim_entry: Manifest | None = None,
) -> Any:
    """Build the settings class from the container's environment, with stand-ins for Secrets; for
    a listener or poller, with one entry of its VIMs file (the one-entry form)."""
    with monkeypatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("EVENTFED_"):
                patch.delenv(name)
        for name, entry in env_of(container, docs).items():
            if name in VIMS_FILE_ENV:
                continue
            if "value" in entry:
                patch.setenv(name, str(entry["value"]))
            else:
                patch.setenv(name, "rabbit://user:secret@rabbitmq:5672/")
        for name, value in one_entry_env(vim_entry or {}, settings_cls).items():
            patch.setenv(name, value)
        # The files the environment names are mounted in the pod, not here:
        # tests/helm/test_chart_program.py starts each process with them.
        with files_elsewhere():
            return settings_cls()


def test_values_parse_as_settings(manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch) -> None:
    for where, container, settings_cls in app_containers(manifests):
        vim_entries: list[Manifest | None] = [None]
        if settings_cls in PER_VIM_KEYS:
            # Each VIM of the file, with the process-wide environment, as the single-VIM settings.
            (deployment,) = [
                d for d in of_kind(manifests, "Deployment") if where.startswith(d["metadata"]["name"] + "/")
            ]
            vim_entries = list(vims_file_of(deployment, manifests))
        for vim_entry in vim_entries:
            try:
                settings_from_env(container, manifests, settings_cls, monkeypatch, vim_entry)
            except Exception as exc:  # pydantic's ValidationError names the bad field
                pytest.fail(
                    f"{where}: {settings_cls.__name__} rejects the chart's settings {vim_entry}: {exc}"
                )


def test_listener_and_stream_serve_health_on_the_metrics_port(manifests: list[Manifest]) -> None:
    for where, container, settings_cls in app_containers(manifests):
        env = env_of(container, manifests)
        if settings_cls is ApiSettings:
            assert env["EVENTFED_API_HOST"]["value"] == "0.0.0.0", where
            assert env["EVENTFED_API_PORT"]["value"] == "8080", where
        else:
            assert env["EVENTFED_METRICS_HOST"]["value"] == "0.0.0.0", where
            assert env["EVENTFED_METRICS_PORT"]["value"] == "9100", where


# --------------------------------------------------------------------------------------------
# Bad values fail with a message naming the problem
# --------------------------------------------------------------------------------------------

# (id, values, message, who rejects them). Schema errors fail `helm lint` and `helm template`;
# the cross-field checks in templates/_helpers.tpl ("eventfed.validate") are template `fail`s,
# which `helm template`/`install` turn into errors and `helm lint` only reports as [INFO].
SCHEMA, TEMPLATE = "schema", "template"
A_VIM = {"cloudOwner": "o", "cloudRegionId": "r", "transportUrlSecret": {"name": "s", "key": "k"}}
BAD_VALUES: list[tuple[str, Manifest, str, str]] = [
    ("wrong-type", {"stream": {"replicas": "two"}}, r"/stream/replicas.*want integer", SCHEMA),
    ("wrong-type-bool", {"strimzi": {"enabled": "yes"}}, r"/strimzi/enabled.*want boolean", SCHEMA),
    (
        "missing-vim-field",
        {"vims": [{"cloudOwner": "CloudOwner", "transportUrlSecret": {"name": "s", "key": "url"}}]},
        r"/vims/0.*missing propert.*cloudRegionId",
        SCHEMA,
    ),
    (
        "missing-vim-secret",
        {"vims": [{"cloudOwner": "CloudOwner", "cloudRegionId": "RegionOne"}]},
        r"/vims/0.*missing propert.*transportUrlSecret",
        SCHEMA,
    ),
    ("unknown-key", {"replicaCount": 3}, r"additional propert.*replicaCount.*not allowed", SCHEMA),
    (
        "unknown-nested-key",
        {"listener": {"replica": 2}},
        r"/listener.*additional propert.*replica.*not allowed",
        SCHEMA,
    ),
    ("bad-vim-id", {"vims": [{**A_VIM, "cloudRegionId": "Region/One"}]}, r"/vims/0/cloudRegionId", SCHEMA),
    ("bad-protocol", {"kafka": {"securityProtocol": "TLS"}}, r"/kafka/securityProtocol", SCHEMA),
    (
        "bad-sink-format",
        {"subscriptions": [{"name": "x", "sink": {"type": "kafka", "topic": "t", "format": "xml"}}]},
        r"/subscriptions/0/sink/format",
        SCHEMA,
    ),
    ("no-credentials-without-strimzi", {"strimzi": {"enabled": False}}, r"/kafka/sasl/username", SCHEMA),
    ("strimzi-needs-scram-512", {"kafka": {"saslMechanism": "PLAIN"}}, r"/kafka/saslMechanism", SCHEMA),
    (
        "basic-auth-without-password",
        {"api": {"auth": {"basic": {"user": "onap"}}}},
        r"/api/auth/basic/passwordSecret",
        SCHEMA,
    ),
    (
        "too-many-workers",
        {"stream": {"replicas": 9}},
        r"stream\.replicas \(9\) must not exceed kafka\.partitions \(8\)",
        TEMPLATE,
    ),
    ("duplicate-vim", {"vims": [A_VIM, A_VIM]}, r'VIM "o_r" is listed twice', TEMPLATE),
    ("bad-stuck-kind", {"stream": {"stuckAfter": {"delete": "10m"}}}, r"propertyName 'delete'", SCHEMA),
    ("bad-stuck-time", {"stream": {"stuckAfter": {"DELETE": "soon"}}}, r"/stream/stuckAfter/DELETE", SCHEMA),
    (
        "durable-queues-not-a-boolean",
        {"vims": [{**A_VIM, "durableQueues": "yes"}]},
        r"/vims/0/durableQueues.*want boolean",
        SCHEMA,
    ),
    (
        "poll-without-nova",
        {"vims": [{"cloudOwner": "o", "cloudRegionId": "r", "mode": "poll"}]},
        r"/vims/0.*missing propert.*nova",
        SCHEMA,
    ),
    (
        "both-without-transport-url",
        {
            "vims": [
                {
                    "cloudOwner": "o",
                    "cloudRegionId": "r",
                    "mode": "both",
                    "nova": {
                        "auth": "token",
                        "endpoint": "http://n/v2.1",
                        "tokenSecret": {"name": "s", "key": "k"},
                    },
                }
            ]
        },
        r"/vims/0.*missing propert.*transportUrlSecret",
        SCHEMA,
    ),
    (
        "keystone-without-password",
        {
            "vims": [
                {
                    "cloudOwner": "o",
                    "cloudRegionId": "r",
                    "mode": "poll",
                    "nova": {
                        "auth": "keystone",
                        "authUrl": "https://k/v3",
                        "username": "u",
                        "projectName": "p",
                    },
                }
            ]
        },
        r"/vims/0/nova.*missing propert.*passwordSecret",
        SCHEMA,
    ),
    ("bad-mode", {"vims": [{**A_VIM, "mode": "push"}]}, r"/vims/0/mode", SCHEMA),
]


@pytest.mark.parametrize("command", ["lint", "template"])
@pytest.mark.parametrize(
    ("values", "message", "enforced_by"),
    [case[1:] for case in BAD_VALUES],
    ids=[case[0] for case in BAD_VALUES],
)
def test_bad_values_fail_with_a_message(
    helm: str, tmp_path: Path, command: str, values: Manifest, message: str, enforced_by: str
) -> None:
    path = tmp_path / "bad-values.yaml"
    path.write_text(yaml.safe_dump(values))
    args = ["lint", "--strict", str(CHART)] if command == "lint" else ["template", "x", str(CHART)]
    result = run_helm(helm, *args, "-f", str(path))
    output = result.stdout + result.stderr
    assert re.search(message, output, re.DOTALL), output
    if command == "lint" and enforced_by == TEMPLATE:
        assert "[INFO] Fail:" in output, output
    else:
        assert result.returncode != 0, f"helm {command} accepted {values}"


# --------------------------------------------------------------------------------------------
# What the cluster serves: Strimzi's API version, the Prometheus Operator's kinds
# --------------------------------------------------------------------------------------------


def test_existing_topics_get_no_kafka_topic_but_keep_the_acl(render: Callable[..., list[Manifest]]) -> None:
    sec_fault = "unauthenticated.SEC_FAULT_OUTPUT"
    assert sec_fault in DEFAULT_VALUES["kafka"]["existingTopics"]
    docs = render(MULTI_VIM_VALUES, release="onap")
    assert sec_fault in subscription_sink_topics(docs)
    assert sec_fault not in topics_by_name(docs)
    assert acl_table(docs)[("topic", "literal", sec_fault)] == {"Describe", "Write"}
    # Asked for, the chart declares it like any other subscription topic.
    created = render(MULTI_VIM_VALUES, sets=("kafka.existingTopics=null",), release="onap")
    assert topics_by_name(created)[sec_fault]["spec"]["config"]["retention.ms"] == 7200000
    only_other = render(
        MULTI_VIM_VALUES,
        sets=("kafka.existingTopics[0]=unauthenticated.VES_MEASUREMENT_OUTPUT",),
        release="onap",
    )
    assert sec_fault in topics_by_name(only_other)


def strimzi_api_versions(docs: list[Manifest]) -> set[str]:
    return {doc["apiVersion"] for doc in docs if doc["kind"] in ("KafkaTopic", "KafkaUser")}


def test_strimzi_api_version_follows_the_cluster(helm: str) -> None:
    def rendered(*args: str) -> list[Manifest]:
        result = run_helm(helm, "template", "onap", str(CHART), "-f", str(MULTI_VIM_VALUES), *args)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    v1 = (
        "--api-versions",
        "kafka.strimzi.io/v1/KafkaTopic",
        "--api-versions",
        "kafka.strimzi.io/v1/KafkaUser",
    )
    # Strimzi 0.4x (ONAP OOM) serves v1beta2 only; 0.49 both; 1.x v1 only.
    assert strimzi_api_versions(rendered()) == {"kafka.strimzi.io/v1beta2"}
    assert strimzi_api_versions(rendered(*v1)) == {"kafka.strimzi.io/v1"}
    assert strimzi_api_versions(rendered(*v1, "--api-versions", "kafka.strimzi.io/v1beta2/KafkaTopic")) == {
        "kafka.strimzi.io/v1"
    }
    forced = rendered(*v1, "--set", "strimzi.apiVersion=kafka.strimzi.io/v1beta2")
    assert strimzi_api_versions(forced) == {"kafka.strimzi.io/v1beta2"}
    assert strimzi_api_versions(rendered("--set", "strimzi.apiVersion=kafka.strimzi.io/v1")) == {
        "kafka.strimzi.io/v1"
    }


def test_monitoring_objects_only_where_the_cluster_serves_them(helm: str) -> None:
    def kinds(*args: str) -> Counter[str]:
        result = run_helm(helm, "template", "onap", str(CHART), "-f", str(MULTI_VIM_VALUES), *args)
        assert result.returncode == 0, result.stderr
        return Counter(doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc)

    absent = kinds()
    assert absent["ServiceMonitor"] == absent["PrometheusRule"] == 0
    served = kinds(
        "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
        "--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
    )  # fmt: skip
    assert served["ServiceMonitor"] == served["PrometheusRule"] == 1
    only_monitor = kinds("--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    assert (only_monitor["ServiceMonitor"], only_monitor["PrometheusRule"]) == (1, 0)
    forced = kinds("--set", "metrics.prometheusOperator=always")
    assert forced["ServiceMonitor"] == forced["PrometheusRule"] == 1
    off = kinds("--set", "metrics.prometheusOperator=always", "--set", "metrics.prometheusRule.enabled=false")
    assert (off["ServiceMonitor"], off["PrometheusRule"]) == (1, 0)
    # The dashboard is a plain ConfigMap: no operator needed.
    (dashboard,) = [
        doc
        for doc in yaml.safe_load_all(
            run_helm(helm, "template", "onap", str(CHART), "-f", str(MULTI_VIM_VALUES)).stdout
        )
        if doc and doc["kind"] == "ConfigMap" and "eventfed.json" in doc.get("data", {})
    ]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["eventfed.json"])["panels"]


def test_alerts_group_by_labels_the_service_monitor_puts_on_series(multi_manifests: list[Manifest]) -> None:
    (monitor,) = of_kind(multi_manifests, "ServiceMonitor")
    (rule,) = of_kind(multi_manifests, "PrometheusRule")
    # Prometheus turns a pod label into a label name by replacing what is not [a-zA-Z0-9_] with "_".
    target_labels = {re.sub(r"[^a-zA-Z0-9_]", "_", label) for label in monitor["spec"]["podTargetLabels"]}
    used: set[str] = set()
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            expr = alert["expr"]
            for labels in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
                used |= {label.strip() for label in labels.split(",")}
            used |= set(re.findall(r"([a-z_]+)=~?\"", expr))
            used |= set(re.findall(r"\$labels\.([a-z_]+)", " ".join(alert["annotations"].values())))
    from_pods = {
        label for label in used if "_kubernetes_io_" in label or label.startswith("eventfed_onap_org_")
    }
    assert from_pods == {
        "app_kubernetes_io_instance",
        "app_kubernetes_io_component",
        "eventfed_onap_org_shard",
    }
    assert from_pods <= target_labels
    # A pod serves many VIMs: the per-VIM alert groups by the series' own `vim` label.
    assert "vim" in used
    # Every listener and poller pod carries the shard label the alerts group by.
    for deployment in of_kind(multi_manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if labels["app.kubernetes.io/component"] in ("listener", "poller"):
            assert "eventfed.onap.org/shard" in labels
