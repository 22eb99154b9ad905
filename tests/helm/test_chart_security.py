"""The chart's security values: Kafka mutual TLS from Strimzi's KafkaUser and cluster CA Secrets,
and RabbitMQ TLS per VIM. Every setting a pod gets must point into a read-only mount of the right
Secret, and parse as the settings of the subcommand that reads it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import pytest
import yaml

from bridge.settings import ApiSettings, ListenerSettings, StreamSettings, env_names
from tests.helm.test_chart import (  # fixtures and helpers of the chart tests
    CHART,
    VIMS_FILE_ENV,
    Manifest,
    app_containers,
    entries_by_vim,
    env_of,
    helm,  # noqa: F401 - a fixture
    is_secret_field,
    of_kind,
    render,  # noqa: F401 - a fixture
    run_helm,
    secret_file,
    shard_deployments,
)

pytestmark = pytest.mark.helm

VIM = {
    "cloudOwner": "owner",
    "cloudRegionId": "r1",
    "transportUrlSecret": {"name": "r1-rabbit", "key": "url"},
}
VIM_TLS = {
    "cloudOwner": "owner",
    "cloudRegionId": "r2",
    "transportUrlSecret": {"name": "r2-rabbit", "key": "url"},
    "rabbitTls": {
        "enabled": True,
        "secretName": "r2-rabbit-tls",
        "caKey": "ca.pem",
        "certificateKey": "",
        "keyKey": "",
    },
}
STRIMZI_MTLS = {
    "kafka": {"securityProtocol": "SSL", "clientCertificate": {"enabled": True}},
    "global": {"kafkaBootstrap": "strimzi-kafka-bootstrap:9093"},
    "vims": [VIM],
}


@pytest.fixture(scope="module")
def render_values(render: Callable[..., list[Manifest]], tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    def _render(values: dict[str, Any], release: str = "onap") -> list[Manifest]:
        path = tmp_path_factory.mktemp("values") / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        return render(path, release=release)

    return _render


def pod_spec(deployment: Manifest) -> Manifest:
    return deployment["spec"]["template"]["spec"]


def mounted_file(deployment: Manifest, container: Manifest, path: str) -> tuple[Manifest, str]:
    """The Secret volume and the item key a file path in the container comes from; the mount must
    be read-only."""
    file = PurePosixPath(path)
    mounts = [m for m in container.get("volumeMounts", []) if file.parent == PurePosixPath(m["mountPath"])]
    assert len(mounts) == 1, f"{path} is not in exactly one mount of {container['name']}: {mounts}"
    mount = mounts[0]
    assert mount.get("readOnly") is True, f"{mount} must be read-only"
    (volume,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]
    (item,) = [i for i in secret["items"] if i["path"] == file.name]
    return secret, item["key"]


def deployments_by_command(docs: list[Manifest]) -> dict[str, list[tuple[Manifest, Manifest]]]:
    found: dict[str, list[tuple[Manifest, Manifest]]] = {"listen": [], "stream": [], "api": []}
    for deployment in of_kind(docs, "Deployment"):
        for container in pod_spec(deployment)["containers"]:
            found[container["args"][0]].append((deployment, container))
    return found


def test_kafka_mtls_mounts_the_strimzi_user_and_cluster_ca_secrets_for_every_component(render_values) -> None:
    docs = render_values(STRIMZI_MTLS)
    by_command = deployments_by_command(docs)
    assert all(by_command.values()), "a listener, a stream worker and an API"
    for deployment, container in (pair for pairs in by_command.values() for pair in pairs):
        env = env_of(container, docs)
        assert env["EVENTFED_KAFKA_SECURITY_PROTOCOL"]["value"] == "SSL"
        secret, key = mounted_file(
            deployment, container, env["EVENTFED_KAFKA_SSL_CERTIFICATE_LOCATION"]["value"]
        )
        assert (secret["secretName"], key) == ("onap-eventfed-ku", "user.crt")
        assert secret["defaultMode"] == 0o440, "the key is readable by the pod's group only"
        secret, key = mounted_file(deployment, container, env["EVENTFED_KAFKA_SSL_KEY_LOCATION"]["value"])
        assert (secret["secretName"], key) == ("onap-eventfed-ku", "user.key")
        secret, key = mounted_file(deployment, container, env["EVENTFED_KAFKA_SSL_CA_LOCATION"]["value"])
        assert (secret["secretName"], key) == ("onap-strimzi-cluster-ca-cert", "ca.crt")
        # Strimzi's user.key is not encrypted; user.password belongs to user.p12.
        assert "EVENTFED_KAFKA_SSL_KEY_PASSWORD" not in env
        assert "EVENTFED_KAFKA_SASL_PASSWORD" not in env and "EVENTFED_KAFKA_SASL_USERNAME" not in env
        assert env["EVENTFED_KAFKA_BOOTSTRAP_SERVERS"]["value"] == "onap-strimzi-kafka-bootstrap:9093"
    (user,) = of_kind(docs, "KafkaUser")
    assert user["metadata"]["name"] == "onap-eventfed-ku"
    assert user["spec"]["authentication"] == {"type": "tls"}


def test_kafka_mtls_from_named_secrets_with_a_key_password(render_values) -> None:
    docs = render_values(
        {
            "strimzi": {"enabled": False},
            "kafka": {
                "bootstrapServers": "kafka:9093",
                "securityProtocol": "SSL",
                "caSecret": {"name": "kafka-ca", "key": "ca.pem"},
                "clientCertificate": {
                    "enabled": True,
                    "secretName": "eventfed-client",
                    "certificateKey": "tls.crt",
                    "keyKey": "tls.key",
                    "keyPasswordSecret": {"name": "eventfed-client-pw", "key": "pw"},
                },
            },
            "vims": [VIM],
        }
    )
    assert not of_kind(docs, "KafkaUser")
    for where, container, settings_cls in app_containers(docs):
        (deployment,) = [
            d for d in of_kind(docs, "Deployment") if where.startswith(d["metadata"]["name"] + "/")
        ]
        env = env_of(container, docs)
        assert env["EVENTFED_KAFKA_SSL_KEY_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "eventfed-client-pw",
            "key": "pw",
        }
        assert is_secret_field(settings_cls, "EVENTFED_KAFKA_SSL_KEY_PASSWORD")
        for setting, want in (
            ("EVENTFED_KAFKA_SSL_CERTIFICATE_LOCATION", ("eventfed-client", "tls.crt")),
            ("EVENTFED_KAFKA_SSL_KEY_LOCATION", ("eventfed-client", "tls.key")),
            ("EVENTFED_KAFKA_SSL_CA_LOCATION", ("kafka-ca", "ca.pem")),
        ):
            secret, key = mounted_file(deployment, container, env[setting]["value"])
            assert (secret["secretName"], key) == want, where


def test_rabbitmq_tls_per_vim(render_values) -> None:
    docs = render_values(
        {
            "listener": {
                "rabbitTls": {
                    "enabled": True,
                    "secretName": "rabbit-tls",
                    "caKey": "ca.crt",
                    "certificateKey": "tls.crt",
                    "keyKey": "tls.key",
                }
            },
            "vims": [VIM, VIM_TLS, {**VIM, "cloudRegionId": "r3", "rabbitTls": {"enabled": False}}],
        }
    )
    (shard,) = shard_deployments(docs, "listener").values()
    entries = entries_by_vim(docs, "listener")
    expect = {
        # The listener default: CA, client certificate and key.
        "owner_r1": {
            "rabbit_ssl_ca_file": ("rabbit-tls", "ca.crt"),
            "rabbit_ssl_cert_file": ("rabbit-tls", "tls.crt"),
            "rabbit_ssl_key_file": ("rabbit-tls", "tls.key"),
        },
        # Its own Secret, a CA only.
        "owner_r2": {"rabbit_ssl_ca_file": ("r2-rabbit-tls", "ca.pem")},
        "owner_r3": None,
    }
    for vim_id, files in expect.items():
        entry = entries[vim_id]
        rabbit = {key for key in entry if key.startswith("rabbit_")}
        if files is None:
            assert not rabbit, vim_id
            continue
        assert entry["rabbit_ssl"] is True
        assert rabbit == {"rabbit_ssl", *files}, vim_id
        for setting, want in files.items():
            assert entry[setting].startswith(f"/etc/eventfed/vim-secrets/{vim_id}/")
            assert secret_file(shard, entry[setting]) == want, (vim_id, setting)
        assert {f"EVENTFED_{key.upper()}" for key in rabbit} <= env_names(ListenerSettings)
    # Nothing of RabbitMQ in any environment: it is per VIM, in the VIMs file.
    for deployment in of_kind(docs, "Deployment"):
        for container in pod_spec(deployment)["containers"]:
            assert not [n for n in env_of(container, docs) if n.startswith("EVENTFED_RABBIT_")]


def test_security_env_is_read_by_each_subcommand(render_values) -> None:
    docs = render_values(
        {
            **STRIMZI_MTLS,
            "listener": {"rabbitTls": {"enabled": True, "secretName": "rabbit-tls", "caKey": "ca.crt"}},
        }
    )
    classes = {ListenerSettings, StreamSettings, ApiSettings}
    for where, container, settings_cls in app_containers(docs):
        assert settings_cls in classes
        env = env_of(container, docs)
        ours = {name for name in env if name.startswith("EVENTFED_")}
        # The VIMs file is the multi-VIM contract of listen and poll (tests/helm/test_chart.py).
        known = env_names(settings_cls) | (VIMS_FILE_ENV if settings_cls is ListenerSettings else set())
        assert ours <= known, f"{where}: {sorted(ours - known)}"
        for name, entry in env.items():
            if name in env_names(settings_cls):
                assert ("secretKeyRef" in entry.get("valueFrom", {})) == is_secret_field(
                    settings_cls, name
                ), name


BAD_SECURITY_VALUES = [
    (
        "mtls-without-tls",
        {"kafka": {"securityProtocol": "SASL_PLAINTEXT", "clientCertificate": {"enabled": True}}},
        r"kafka\.clientCertificate\.enabled needs kafka\.securityProtocol SSL or SASL_SSL",
    ),
    (
        "mtls-and-scram-on-one-kafkauser",
        {"kafka": {"securityProtocol": "SASL_SSL", "clientCertificate": {"enabled": True}}},
        r"a Strimzi KafkaUser authenticates with SCRAM .* or a TLS client certificate",
    ),
    (
        "mtls-no-secret-without-strimzi",
        {
            "strimzi": {"enabled": False},
            "kafka": {
                "securityProtocol": "SSL",
                "bootstrapServers": "k:9093",
                "caSecret": {"name": "ca", "key": "ca.crt"},
                "clientCertificate": {"enabled": True},
            },
        },
        r"kafka\.clientCertificate\.secretName is required",
    ),
    (
        "rabbit-certificate-without-key",
        {"vims": [{**VIM, "rabbitTls": {"enabled": True, "secretName": "t", "certificateKey": "tls.crt"}}]},
        r"rabbitTls\.certificateKey and rabbitTls\.keyKey go together",
    ),
    (
        "rabbit-tls-unknown-key",
        {"listener": {"rabbitTls": {"enabled": True, "caFile": "x"}}},
        r"additional properties 'caFile' not allowed|caFile",
    ),
]


@pytest.mark.parametrize(
    ("values", "message"), [c[1:] for c in BAD_SECURITY_VALUES], ids=[c[0] for c in BAD_SECURITY_VALUES]
)
def test_bad_security_values_fail_with_a_message(helm: str, tmp_path, values: Manifest, message: str) -> None:  # noqa: F811
    path = tmp_path / "bad-values.yaml"
    path.write_text(yaml.safe_dump(values))
    result = run_helm(helm, "template", "x", str(CHART), "-f", str(path))
    assert result.returncode != 0, f"helm template accepted {values}"
    assert re.search(message, result.stdout + result.stderr, re.DOTALL), result.stderr


MTLS_EXAMPLE = CHART / "ci" / "strimzi-mtls-values.yaml"


def test_mtls_example_is_what_it_says(render) -> None:  # noqa: F811
    docs = render(MTLS_EXAMPLE, release="onap")
    (user,) = of_kind(docs, "KafkaUser")
    assert user["spec"]["authentication"] == {"type": "tls"}
    entries = entries_by_vim(docs, "listener")
    assert len(entries) == 2
    (shard,) = shard_deployments(docs, "listener").values()
    for deployment in of_kind(docs, "Deployment"):
        (container,) = pod_spec(deployment)["containers"]
        env = env_of(container, docs)
        secret, _ = mounted_file(deployment, container, env["EVENTFED_KAFKA_SSL_KEY_LOCATION"]["value"])
        assert secret["secretName"] == "onap-eventfed-ku"
    for entry in entries.values():
        name, key = secret_file(shard, entry["rabbit_ssl_ca_file"])
        assert key == "ca.crt" and name in {"rabbitmq-ca", "regiontwo-rabbitmq-tls"}


def test_notes_name_the_client_certificate_secret(helm: str, tmp_path) -> None:  # noqa: F811
    """As test_chart.test_notes_render: NOTES.txt rendered as an ordinary template."""
    chart = tmp_path / "eventfed"
    shutil.copytree(CHART, chart)
    (chart / "NOTES.src").write_text((chart / "templates" / "NOTES.txt").read_text())
    (chart / "templates" / "notes-check.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: |\n"
        '    {{- tpl (.Files.Get "NOTES.src") . | nindent 4 }}\n'
    )
    result = run_helm(
        helm,
        "template",
        "onap",
        str(chart),
        "--show-only",
        "templates/notes-check.yaml",
        "-f",
        str(MTLS_EXAMPLE),
    )
    assert result.returncode == 0, result.stderr
    notes = yaml.safe_load(result.stdout)["data"]["notes"]
    assert (
        'Kafka: onap-strimzi-kafka-bootstrap:9093 (SSL, client certificate from Secret "onap-eventfed-ku")'
        in notes
    )
