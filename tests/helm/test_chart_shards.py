"""VIMs spread over listener and poller shards: 250 generated VIMs over 5 shards, each VIM in
exactly one shard's VIMs file with exactly its own Secrets mounted, the shards balanced; adding or
removing a VIM moves no other VIM and touches no other shard; a VIM's settings changed restart no
pod; one shard more moves only the VIMs the new shard takes. The sharded objects pass the real
API server's strict validation.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.kube import KubeApiServer
from tests.helm.test_apiserver import strict_create
from tests.helm.test_chart import (
    CHART,
    Manifest,
    containers,
    env_of,
    helm,  # noqa: F401 - a fixture
    of_kind,
    run_helm,
    secret_file,
    shard_deployments,
    shard_of,
    vims_by_shard,
    vims_file_of,
)

pytestmark = pytest.mark.helm

VIMS = 250
SHARDS = 5


def generated_vims(count: int, start: int = 0) -> list[dict[str, Any]]:
    """Edge sites of three owners; every fifth also polled, every tenth polled only."""
    vims: list[dict[str, Any]] = []
    for number in range(start, start + count):
        vim: dict[str, Any] = {
            "cloudOwner": ("CloudOwner", "edge-owner", "op.example")[number % 3],
            "cloudRegionId": f"site_{number:04d}",
            "transportUrlSecret": {"name": f"vim-{number:04d}-rabbitmq", "key": "transport-url"},
        }
        if number % 5 == 0:
            vim["mode"] = "poll" if number % 10 == 0 else "both"
            vim["nova"] = {
                "auth": "token",
                "endpoint": f"http://nova.site-{number:04d}.example:8774/v2.1",
                "tokenSecret": {"name": f"vim-{number:04d}-nova", "key": "token"},
            }
            if vim["mode"] == "poll":
                del vim["transportUrlSecret"]
        vims.append(vim)
    return vims


def vim_id(vim: dict[str, Any]) -> str:
    return f"{vim['cloudOwner']}_{vim['cloudRegionId']}"


@pytest.fixture(scope="module")
def render_with(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., list[Manifest]]:  # noqa: F811
    folder = tmp_path_factory.mktemp("shards")
    cache: dict[str, list[Manifest]] = {}

    def _render(values: dict[str, Any]) -> list[Manifest]:
        key = yaml.safe_dump(values)
        if key not in cache:
            path = folder / f"values-{len(cache)}.yaml"
            path.write_text(key)
            result = run_helm(helm, "template", "onap", str(CHART), "-n", "onap", "-f", str(path))
            assert result.returncode == 0, result.stderr
            cache[key] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
        return cache[key]

    return _render


def fleet(vims: list[dict[str, Any]], listeners: int = SHARDS, pollers: int = 3) -> dict[str, Any]:
    return {"vims": vims, "listener": {"replicas": listeners}, "poller": {"replicas": pollers}}


def assignment(docs: list[Manifest], role: str) -> dict[str, int]:
    """VIM id -> shard, from the VIMs files the shards' pods read; each VIM in one file only."""
    found: dict[str, int] = {}
    for shard, entries in vims_by_shard(docs, role).items():
        for entry in entries:
            assert entry["vim_id"] not in found, (
                f"{entry['vim_id']} in {role} shards {found[entry['vim_id']]} and {shard}"
            )
            found[entry["vim_id"]] = shard
    return found


def pod_templates(docs: list[Manifest], role: str) -> dict[int, Manifest]:
    return {shard: d["spec"]["template"] for shard, d in shard_deployments(docs, role).items()}


def vims_config_maps(docs: list[Manifest], role: str) -> dict[int, Manifest]:
    """shard -> the ConfigMap its pods mount as the VIMs file's folder."""
    config_maps = {cm["metadata"]["name"]: cm for cm in of_kind(docs, "ConfigMap")}
    found: dict[int, Manifest] = {}
    for shard, deployment in shard_deployments(docs, role).items():
        (name,) = [
            v["configMap"]["name"]
            for v in deployment["spec"]["template"]["spec"]["volumes"]
            if "configMap" in v
        ]
        found[shard] = config_maps[name]
    return found


@pytest.mark.parametrize(
    ("role", "mode_served"), [("listener", {"listen", "both"}), ("poller", {"poll", "both"})]
)
def test_250_vims_over_the_shards_each_in_exactly_one_with_only_its_secrets(
    render_with: Callable[..., list[Manifest]], role: str, mode_served: set[str]
) -> None:
    vims = generated_vims(VIMS)
    shards = SHARDS if role == "listener" else 3
    docs = render_with(fleet(vims))
    served = [v for v in vims if v.get("mode", "listen") in mode_served]
    found = assignment(docs, role)
    # Each VIM of this role in exactly one shard (assignment() fails on a second), none missing.
    assert sorted(found) == sorted(vim_id(v) for v in served)
    # The shard is the rendezvous hash of the VIM id, as written again here.
    assert found == {vim_id(v): shard_of(vim_id(v), shards) for v in served}
    counts = Counter(found.values())
    assert set(counts) == set(range(shards)), "an empty shard with this many VIMs"
    mean = len(served) / shards
    assert all(0.6 * mean <= n <= 1.4 * mean for n in counts.values()), counts
    by_id = {vim_id(v): v for v in vims}
    for shard, deployment in shard_deployments(docs, role).items():
        assert deployment["metadata"]["name"] == f"onap-eventfed-{role}-{shard}"
        (container,) = containers(deployment)
        assert env_of(container, docs)["EVENTFED_VIMS_FILE"]["value"] == "/etc/eventfed/vims/vims.yaml"
        entries = vims_file_of(deployment, docs)
        secrets_here = {
            (source["secret"]["name"], item["key"], item["path"])
            for volume in deployment["spec"]["template"]["spec"]["volumes"]
            for source in volume.get("projected", {}).get("sources", [])
            for item in source["secret"]["items"]
        }
        wanted = set()
        for entry in entries:
            vim = by_id[entry["vim_id"]]
            if role == "listener":
                ref, file, name = vim["transportUrlSecret"], entry["transport_url_file"], "transport-url"
            else:
                ref, file, name = vim["nova"]["tokenSecret"], entry["nova_token_file"], "nova-token"
            assert file == f"/etc/eventfed/vim-secrets/{entry['vim_id']}/{name}"
            assert secret_file(deployment, file) == (ref["name"], ref["key"])
            wanted.add((ref["name"], ref["key"], f"{entry['vim_id']}/{name}"))
        # Only this shard's VIMs' Secrets.
        assert secrets_here == wanted


def test_adding_or_removing_a_vim_moves_no_other_and_touches_no_other_shard(
    render_with: Callable[..., list[Manifest]],
) -> None:
    vims = generated_vims(VIMS)
    base = render_with(fleet(vims))
    added_vim = generated_vims(1, start=VIMS)[0]
    removed_vim = vims[17]
    added = render_with(fleet([*vims[:100], added_vim, *vims[100:]]))  # anywhere in the list
    removed = render_with(fleet([v for v in vims if v is not removed_vim]))
    for role in ("listener", "poller"):
        before = assignment(base, role)
        for docs, changed_vim, present in ((added, added_vim, True), (removed, removed_vim, False)):
            after = assignment(docs, role)
            changed = vim_id(changed_vim)
            in_role = changed_vim.get("mode", "listen") in (
                {"listen", "both"} if role == "listener" else {"poll", "both"}
            )
            others_after = {k: v for k, v in after.items() if k != changed}
            others_before = {k: v for k, v in before.items() if k != changed}
            assert others_after == others_before, f"{role}: another VIM moved"
            if not in_role:
                assert after == before
                assert pod_templates(docs, role) == pod_templates(base, role)
                continue
            assert (changed in after) == present
            touched = after[changed] if present else before[changed]
            # Every other shard: the same pod template and the same VIMs file, byte for byte.
            for shard, template in pod_templates(docs, role).items():
                if shard != touched:
                    assert template == pod_templates(base, role)[shard], f"{role} shard {shard} changed"
            for shard, config_map in vims_config_maps(docs, role).items():
                if shard != touched:
                    assert config_map == vims_config_maps(base, role)[shard], (
                        f"{role} shard {shard}'s file changed"
                    )


def test_a_vims_settings_changed_restarts_no_pod(render_with: Callable[..., list[Manifest]]) -> None:
    vims = generated_vims(VIMS)
    base = render_with(fleet(vims))
    edited = copy.deepcopy(vims)
    target = edited[1]
    target.update({"topics": ["versioned_notifications"], "exchange": "nova-edge", "durableQueues": True})
    docs = render_with(fleet(edited))
    # No pod template changes (no checksum over VIMs): the process picks the file change up itself.
    assert pod_templates(docs, "listener") == pod_templates(base, "listener")
    shard = assignment(docs, "listener")[vim_id(target)]
    (entry,) = [
        e
        for e in vims_file_of(shard_deployments(docs, "listener")[shard], docs)
        if e["vim_id"] == vim_id(target)
    ]
    assert (entry["topics"], entry["exchange"], entry["durable_queues"]) == (
        ["versioned_notifications"],
        "nova-edge",
        True,
    )
    assert vims_config_maps(docs, "listener")[shard] != vims_config_maps(base, "listener")[shard]


def test_one_shard_more_moves_only_what_the_new_shard_takes(
    render_with: Callable[..., list[Manifest]],
) -> None:
    vims = generated_vims(VIMS)
    before = assignment(render_with(fleet(vims)), "listener")
    after = assignment(render_with(fleet(vims, listeners=SHARDS + 1)), "listener")
    moved = {vim for vim in before if after[vim] != before[vim]}
    assert moved and all(after[vim] == SHARDS for vim in moved), "a VIM moved between the old shards"
    # About 1/(n+1) of the VIMs; hash mod n would move about n/(n+1).
    assert len(moved) <= 1.5 * len(before) / (SHARDS + 1), len(moved)


def test_the_sharded_fleet_passes_the_api_servers_strict_validation(
    kube_apiserver: KubeApiServer, render_with: Callable[..., list[Manifest]]
) -> None:
    docs = render_with(fleet(generated_vims(VIMS)))
    namespace = kube_apiserver.create_namespace("shards")
    try:
        # The built-in kinds; the Strimzi and Prometheus Operator kinds are the install tests' (CRDs).
        builtin = [d for d in docs if d["apiVersion"] in ("v1", "apps/v1", "policy/v1")]
        assert len(of_kind(builtin, "Deployment")) == SHARDS + 3 + 2
        strict_create(kube_apiserver, namespace, builtin)
    finally:
        kube_apiserver.kubectl("delete", "namespace", namespace, "--wait=false")


def test_the_chart_lints_with_the_fleet(helm: str, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet(generated_vims(VIMS))))
    result = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
