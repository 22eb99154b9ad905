"""The README's ONAP install, run as written against a real kube-apiserver with Strimzi 0.45's CRDs
(ONAP's generation): its `kubectl` and `helm` lines succeed, and the release names nothing outside
the chart that those lines and "A real install" do not provide: no other Secret, no other image,
and ONAP's own Kafka (OOM's plain listener, SCRAM), also after an upgrade with values that say
nothing of Kafka."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.kube import ROOT, KubeApiServer, Manifest, docs_of

pytestmark = pytest.mark.helm

README = ROOT / "README.md"
NAMESPACE = "onap"
STRIMZI = "strimzi-0.45.2"
STRIMZI_CRDS = ("kafkatopics.kafka.strimzi.io", "kafkausers.kafka.strimzi.io")
ONAP_KAFKA = "onap-strimzi-kafka-bootstrap:9092"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def commands(block: str) -> list[list[str]]:
    """The shell lines of a README code block, continuations joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def first_block(text: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", text, re.S)
    assert match, f"no {language} block"
    return match.group(1)


def install_lines() -> list[list[str]]:
    return commands(first_block(section("Kubernetes and ONAP"), "sh"))


def pushed_image() -> str:
    (push,) = [
        c for c in commands(first_block(section("A real install"), "sh")) if c[:2] == ["docker", "push"]
    ]
    return push[2]


def pod_specs(manifests: list[Manifest]) -> Iterator[dict[str, Any]]:
    for doc in manifests:
        spec = doc.get("spec", {}).get("template", {}).get("spec")
        if spec:
            yield spec


def secrets_named(spec: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        names.update(e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e)
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


def config_env(manifests: list[Manifest]) -> dict[str, str]:
    found: dict[str, str] = {}
    for doc in manifests:
        if doc["kind"] == "ConfigMap":
            found.update({k: v for k, v in (doc.get("data") or {}).items() if k.startswith("EVENTFED_KAFKA")})
    return found


def run(server: KubeApiServer, line: list[str], tmp_path: Path) -> None:
    tool, *args = line
    assert tool in ("kubectl", "helm"), line
    # Paths in the README are relative to the repository; my-values.yaml is the operator's own.
    args = [str(ROOT / a) if a.startswith("helm/") else a for a in args]
    args = [str(tmp_path / a) if a == "my-values.yaml" else a for a in args]
    result = server.run(tool, *args)
    assert result.returncode == 0, f"{' '.join(line)}:\n{result.stderr}"


@pytest.fixture
def onap(kube_apiserver: KubeApiServer) -> Iterator[KubeApiServer]:
    server = kube_apiserver
    server.delete_crds(STRIMZI_CRDS)
    server.apply_crds([STRIMZI])
    server.use_cache_dir("readme")
    if server.run("kubectl", "get", "namespace", NAMESPACE).returncode != 0:
        server.kubectl("create", "namespace", NAMESPACE)
    try:
        yield server
    finally:
        server.run("helm", "uninstall", "onap-eventfed", "-n", NAMESPACE, "--wait", "--timeout", "60s")
        server.run("kubectl", "-n", NAMESPACE, "delete", "secret", "--ignore-not-found", "--all")


def test_the_readme_install_lines_run_and_the_release_needs_nothing_they_do_not_provide(
    onap: KubeApiServer, tmp_path: Path
) -> None:
    lines = install_lines()
    created = {c[c.index("generic") + 1] for c in lines if c[0] == "kubectl" and "secret" in c}
    assert created >= {"vim-regionone-rabbitmq", "eventfed-api-auth"}
    install = [c for c in lines if c[:2] == ["helm", "install"]]
    upgrade = [c for c in lines if c[:2] == ["helm", "upgrade"]]
    assert len(install) == len(upgrade) == 1
    for line in lines:
        if line[0] == "kubectl":
            run(onap, line, tmp_path)
    run(onap, install[0], tmp_path)

    manifests = docs_of(onap.helm("get", "manifest", "onap-eventfed", "-n", NAMESPACE).stdout)
    kafka_users = [d for d in manifests if d["kind"] == "KafkaUser"]
    cluster = kafka_users[0]["metadata"]["labels"]["strimzi.io/cluster"]
    # Strimzi makes these: the KafkaUser's password Secret and the cluster's CA.
    by_strimzi = {u["metadata"]["name"] for u in kafka_users} | {f"{cluster}-cluster-ca-cert"}
    by_chart = {d["metadata"]["name"] for d in manifests if d["kind"] == "Secret"}
    named = set().union(*(secrets_named(spec) for spec in pod_specs(manifests)))
    assert named - created - by_strimzi - by_chart == set(), "Secrets nobody creates"
    assert created <= named, "the README creates Secrets the release does not use"
    images = {c["image"] for spec in pod_specs(manifests) for c in spec["containers"]}
    assert images == {pushed_image()}
    assert cluster == "onap-strimzi"
    env = config_env(manifests)
    assert env["EVENTFED_KAFKA_BOOTSTRAP_SERVERS"] == ONAP_KAFKA
    assert env["EVENTFED_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert onap.kubectl("-n", NAMESPACE, "get", "kafkausers", "-o", "name").strip()

    # An operator's own values, saying nothing of Kafka: still ONAP's cluster, not one named after
    # the release (onap-eventfed-strimzi).
    (tmp_path / "my-values.yaml").write_text(
        yaml.safe_dump(
            {
                "global": {"repository": "registry.example.com"},
                "vims": [
                    {
                        "cloudOwner": "CloudOwner",
                        "cloudRegionId": "RegionOne",
                        "transportUrlSecret": {"name": "vim-regionone-rabbitmq", "key": "transport-url"},
                    }
                ],
            }
        )
    )
    run(onap, upgrade[0], tmp_path)
    upgraded = docs_of(onap.helm("get", "manifest", "onap-eventfed", "-n", NAMESPACE).stdout)
    labels = {d["metadata"]["labels"]["strimzi.io/cluster"] for d in upgraded if d["kind"] == "KafkaUser"}
    assert labels == {"onap-strimzi"}
    assert config_env(upgraded)["EVENTFED_KAFKA_BOOTSTRAP_SERVERS"] == ONAP_KAFKA
