"""The chart and the program agree: every rendered container, started as the pod would start it.

For each values set, `helm template` renders the chart; for each container of each Deployment the
test builds what the pod would see (the env ConfigMap, the container's env, the Secrets it reads,
the ConfigMaps and Secrets it mounts, as files) and starts `eventfed <args>` with exactly that, then
waits for its /readyz. A value the program does not read, or reads differently (a wrong type, a
file path the mounts do not provide, a subscriptions file the worker refuses), stops the process or
keeps it unready, and the test fails with its log.

What the pods reach differs on one machine, so the values set is first pointed at the local
services through the chart's own values (the chart renders them): the Kafka bootstrap,
replication factor 1, Nova's and Keystone's URLs, RabbitMQ without TLS, and names of our own for
the topics and the stream app id (the brokers are shared). A values set with mutual TLS to Kafka
(securityProtocol SSL) gets a broker of its own whose SSL listener requires a client certificate,
and the Strimzi Secrets it mounts hold that broker's CA and a client certificate and key; the others
use the shared broker in plain transport (it has no SASL listener). Each pod has its own network
namespace, so each process gets its own metrics or API port, bound to loopback. Everything else is
the values set's own.

The same processes are scraped: every metric the PrometheusRule and the Grafana dashboard name must
be one these processes export.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.settings import CommonSettings, env_names
from tests.helm.kube import Manifest, docs_of
from tests.helm.test_chart import (
    CHART,
    DEFAULT_VALUES,
    SETTINGS_BY_SUBCOMMAND,
    VIMS_FILE_ENV,
    one_entry_env,
)
from tests.support.nova_api import FakeNovaApi
from tests.support.processes import Proc, clean_env, free_port, wait_http
from tests.support.tls import Pki, make_pki

pytestmark = [pytest.mark.helm]

ROOT = Path(__file__).resolve().parents[2]
VALUES_SETS: dict[str, Path | None] = {"default": None} | {
    path.name.removesuffix("-values.yaml"): path for path in sorted((CHART / "ci").glob("*-values.yaml"))
}
READY_TIMEOUT = 120.0


def helm_binary() -> str:
    result = subprocess.run(
        [str(ROOT / "scripts" / "helm")], capture_output=True, text=True, timeout=1200, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def rabbitmqctl(*args: str) -> None:
    subprocess.run(
        [str(ROOT / "scripts/rabbitmq"), "ctl", *args], check=True, capture_output=True, timeout=120
    )


def values_of(name: str) -> dict[str, Any]:
    path = VALUES_SETS[name]
    values: dict[str, Any] = copy.deepcopy(yaml.safe_load(path.read_text())) if path else {}
    return values


def wants_mutual_tls(name: str) -> bool:
    return bool(values_of(name).get("kafka", {}).get("securityProtocol") == "SSL")


def local_values(name: str, marker: str, nova: FakeNovaApi, kafka_bootstrap: str) -> dict[str, Any]:
    """The values set, pointed at the local services (see the module docstring)."""
    values = values_of(name)
    kafka = values.setdefault("kafka", {})
    kafka.update({"bootstrapServers": kafka_bootstrap, "replicationFactor": 1})
    if not wants_mutual_tls(name):
        # The local broker has no SASL listener: plain transport.
        kafka["securityProtocol"] = "PLAINTEXT"
        kafka.setdefault("clientCertificate", {})["enabled"] = False
    topics = kafka.setdefault("topics", {})
    for role in DEFAULT_VALUES["kafka"]["topics"]:
        topics.setdefault(role, {})["name"] = f"chartprog-{marker}.{role}"
    values.setdefault("stream", {})["appId"] = f"chartprog-{marker}-stream"
    values.setdefault("listener", {}).setdefault("rabbitTls", {})["enabled"] = False
    for vim in values.get("vims", []):
        if "rabbitTls" in vim:
            vim["rabbitTls"]["enabled"] = False
        if "nova" in vim:
            if vim["nova"].get("auth", "keystone") == "keystone":
                vim["nova"]["authUrl"] = nova.auth_url
            else:
                vim["nova"]["endpoint"] = nova.endpoint
    return values


@dataclass
class Secrets:
    """What each Secret the chart names holds here: made up, of the right shape."""

    rabbit_url: str
    nova: FakeNovaApi
    pki: Pki
    by_name: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def for_values(
        cls, values: dict[str, Any], docs: list[Manifest], rabbit_url: str, nova: FakeNovaApi, pki: Pki
    ) -> Secrets:
        secrets = cls(rabbit_url, nova, pki)
        ca = pki.ca.read_text()
        # Strimzi's Secrets (the cluster CA, the KafkaUser's certificate and key), as the pods mount them.
        files = {"ca.crt": pki.ca, "user.crt": pki.client_cert, "user.key": pki.client_key}
        for doc in docs:
            if doc["kind"] != "Deployment":
                continue
            for volume in doc["spec"]["template"]["spec"].get("volumes", []):
                if volume["name"] in ("kafka-ca", "kafka-user"):
                    for item in volume["secret"]["items"]:
                        key = (volume["secret"]["secretName"], item["key"])
                        secrets.by_name[key] = files[item["path"]].read_text()
        for vim in values.get("vims", []):
            if "transportUrlSecret" in vim:
                ref = vim["transportUrlSecret"]
                secrets.by_name[(ref["name"], ref["key"])] = rabbit_url
            nova_values = vim.get("nova", {})
            if "passwordSecret" in nova_values:
                ref = nova_values["passwordSecret"]
                secrets.by_name[(ref["name"], ref["key"])] = nova.password
            if "tokenSecret" in nova_values:
                ref = nova_values["tokenSecret"]
                secrets.by_name[(ref["name"], ref["key"])] = nova.token
            if "caSecret" in nova_values:
                ref = nova_values["caSecret"]
                secrets.by_name[(ref["name"], ref["key"])] = ca
        auth = values.get("api", {}).get("auth", {})
        if auth.get("tokenSecret", {}).get("name"):
            ref = auth["tokenSecret"]
            secrets.by_name[(ref["name"], ref.get("key", "token"))] = uuid.uuid4().hex
        if auth.get("basic", {}).get("passwordSecret", {}).get("name"):
            ref = auth["basic"]["passwordSecret"]
            secrets.by_name[(ref["name"], ref.get("key", "password"))] = uuid.uuid4().hex
        return secrets

    def value(self, name: str, key: str) -> str:
        assert (name, key) in self.by_name, f"the chart reads Secret {name}/{key}, which no value names"
        return self.by_name[(name, key)]


@dataclass
class Started:
    deployment: str
    command: str
    proc: Proc
    ready_url: str
    metrics_url: str


def container_processes(
    docs: list[Manifest], secrets: Secrets, workdir: Path
) -> Iterator[tuple[str, list[str], dict[str, str], str, str]]:
    """(deployment, args, env, ready URL, metrics URL) for every container, as its pod sees it."""
    config_maps = {doc["metadata"]["name"]: doc.get("data", {}) for doc in docs if doc["kind"] == "ConfigMap"}
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert not pod.get("initContainers"), "an init container the test does not start"
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod["containers"]:
            name = f"{doc['metadata']['name']}-{container['name']}"
            env: dict[str, str] = {}
            for source in container.get("envFrom", []):
                env.update(config_maps[source["configMapRef"]["name"]])
            for item in container.get("env", []):
                if "value" in item:
                    env[item["name"]] = str(item["value"])
                else:
                    ref = item["valueFrom"]["secretKeyRef"]
                    env[item["name"]] = secrets.value(ref["name"], ref["key"])
            mounts: dict[str, Path] = {}
            for mount in container.get("volumeMounts", []):
                local = workdir / name / mount["name"]
                local.mkdir(parents=True, exist_ok=True)
                volume = volumes[mount["name"]]
                if "configMap" in volume:
                    data = config_maps[volume["configMap"]["name"]]
                    items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
                    for entry in items:
                        (local / entry["path"]).write_text(data[entry["key"]])
                elif "secret" in volume:
                    for entry in volume["secret"]["items"]:
                        (local / entry["path"]).write_text(
                            secrets.value(volume["secret"]["secretName"], entry["key"])
                        )
                elif "projected" in volume:
                    for source in volume["projected"]["sources"]:
                        for entry in source["secret"]["items"]:
                            (local / entry["path"]).parent.mkdir(parents=True, exist_ok=True)
                            (local / entry["path"]).write_text(
                                secrets.value(source["secret"]["name"], entry["key"])
                            )
                else:
                    assert "emptyDir" in volume, f"volume {mount['name']}: a kind the test does not provide"
                mounts[mount["mountPath"]] = local

            def local_path(value: str, mounts: dict[str, Path] = mounts) -> str:
                """A path into the mounts, longest mount first, becomes the local folder's."""
                for mount_path in sorted(mounts, key=len, reverse=True):
                    if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                        return str(mounts[mount_path]) + value[len(mount_path.rstrip("/")) :]
                return value

            env = {key: local_path(value) for key, value in env.items()}
            args = list(container.get("command", [])[1:]) + list(container["args"])
            if "EVENTFED_VIMS_FILE" in env:
                # The VIMs file names files in the pod's mounts: the local ones here.
                vims_file = Path(env["EVENTFED_VIMS_FILE"])
                document = yaml.safe_load(vims_file.read_text())
                for vim in document["vims"]:
                    vim.update({k: local_path(v) for k, v in vim.items() if isinstance(v, str)})
                vims_file.write_text(yaml.safe_dump(document))
                if "EVENTFED_VIMS_FILE" not in env_names(SETTINGS_BY_SUBCOMMAND[args[0]]):
                    # A program without the VIMs file: each VIM started in the one-entry form, the
                    # single-VIM environment that entry stands for.
                    for vim in document["vims"]:
                        yield per_process(f"{name}-{vim['vim_id']}", args, {
                            **{k: v for k, v in env.items() if k not in VIMS_FILE_ENV},
                            **single_vim_env(vim, SETTINGS_BY_SUBCOMMAND[args[0]]),
                        })  # fmt: skip
                    continue
            yield per_process(name, args, env)


def single_vim_env(vim: dict[str, Any], settings_cls: type[CommonSettings]) -> dict[str, str]:
    """One VIMs file entry as environment settings; a secret's X_file gives X the file's content."""
    env = one_entry_env(vim, settings_cls)
    for key, value in vim.items():
        if key.endswith("_file") and key not in settings_cls.model_fields:
            env[f"EVENTFED_{key.removesuffix('_file').upper()}"] = Path(value).read_text()
    return env


def per_process(
    name: str, args: list[str], env: dict[str, str]
) -> tuple[str, list[str], dict[str, str], str, str]:
    """Each pod has its own network namespace: here each process gets its own port, on loopback."""
    port = free_port()
    if args[0] == "api":
        env = env | {"EVENTFED_API_HOST": "127.0.0.1", "EVENTFED_API_PORT": str(port)}
    else:
        env = env | {"EVENTFED_METRICS_HOST": "127.0.0.1", "EVENTFED_METRICS_PORT": str(port)}
    base = f"http://127.0.0.1:{port}"
    return name, args, env, f"{base}/readyz", f"{base}/metrics"


def exported_names(text: str) -> set[str]:
    """Series names a scrape of this exposition can show, from its # TYPE lines."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("_sum", "_count", "_created"),
        "info": ("_info",),
        "gauge": ("",),
        "untyped": ("",),
    }
    names: set[str] = set()
    for line in text.splitlines():
        match = re.match(r"# TYPE (\S+) (\S+)", line)
        if match:
            base, kind = match.groups()
            base = base.removesuffix("_total") if kind == "counter" else base
            names |= {base + suffix for suffix in suffixes.get(kind, ("",))}
    return names


RUNS: dict[str, dict[str, set[str]]] = {}


@dataclass
class Broker:
    bootstrap: str  # what the pods are given
    admin_bootstrap: str  # plain listener for the test's own topic set-up
    created: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def run_values_set(
    kafka_bootstrap: str, rabbit_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """Start every container of a values set until ready; its metric names per command. Cached."""
    from confluent_kafka.admin import AdminClient, NewTopic

    helm = helm_binary()
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    brokers: dict[str, Broker] = {"plain": Broker(kafka_bootstrap, kafka_bootstrap)}
    mtls_env: dict[str, str] = {}
    vhosts: list[str] = []

    def broker_for(name: str) -> Broker:
        if not wants_mutual_tls(name):
            return brokers["plain"]
        if "mtls" not in brokers:
            # A broker of its own whose SSL listener requires a client certificate, as Strimzi's
            # `tls` listener: the values set's certificate Secrets are then used for real.
            port, ssl_port = free_port(), free_port()
            mtls_env.update(
                KAFKA_PORT=str(port), KAFKA_CONTROLLER_PORT=str(free_port()), KAFKA_SSL_PORT=str(ssl_port),
                KAFKA_TLS_DIR=str(pki.dir),
            )  # fmt: skip
            subprocess.run([str(ROOT / "scripts/kafka"), "start"], env={**os.environ, **mtls_env}, check=True)
            brokers["mtls"] = Broker(f"127.0.0.1:{ssl_port}", f"127.0.0.1:{port}")
        return brokers["mtls"]

    def run(name: str) -> dict[str, set[str]]:
        if name in RUNS:
            return RUNS[name]
        marker = uuid.uuid4().hex[:8]
        workdir = tmp_path_factory.mktemp(f"pods-{name}")
        vhost = f"chartprog-{marker}"
        rabbitmqctl("add_vhost", vhost)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        vhosts.append(vhost)
        nova = FakeNovaApi().start()
        try:
            broker = broker_for(name)
            admin = AdminClient({"bootstrap.servers": broker.admin_bootstrap})
            values = local_values(name, marker, nova, broker.bootstrap)
            nova.regions = [
                "RegionOne",
                *[v["nova"].get("regionName", "RegionOne") for v in values.get("vims", []) if "nova" in v],
            ]
            values_path = workdir / "values.yaml"
            values_path.write_text(yaml.safe_dump(values))
            rendered = subprocess.run(
                [helm, "template", "onap", str(CHART), "-n", "onap", "-f", str(values_path)],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert rendered.returncode == 0, rendered.stderr
            docs = docs_of(rendered.stdout)
            topic_names = [doc["spec"]["topicName"] for doc in docs if doc["kind"] == "KafkaTopic"]
            existing = set(admin.list_topics(timeout=10).topics)
            new = [
                NewTopic(t, num_partitions=int(next(d["spec"]["partitions"] for d in docs if d["kind"] == "KafkaTopic" and d["spec"]["topicName"] == t)), replication_factor=1)
                for t in topic_names
                if t not in existing
            ]  # fmt: skip
            # Topics the cluster already has (kafka.existingTopics) exist here too, as on ONAP's.
            for topic in (
                values.get("kafka", {}).get("existingTopics", DEFAULT_VALUES["kafka"]["existingTopics"]) or []
            ):
                if topic not in existing:
                    new.append(NewTopic(topic, num_partitions=1, replication_factor=1))
            for topic, future in admin.create_topics(new).items():
                future.result(timeout=30)
                broker.created.append(topic)
            rabbit = rabbit_url.rstrip("/") + "/" + vhost
            secrets = Secrets.for_values(values, docs, rabbit, nova, pki)
            started: list[Started] = []
            try:
                for deployment, args, env, ready, metrics in container_processes(docs, secrets, workdir):
                    log = workdir / f"{deployment}.log"
                    proc = Proc(args, clean_env(**env), log)
                    started.append(Started(deployment, args[0], proc, ready, metrics))
                for item in started:
                    wait_http(item.ready_url, timeout=READY_TIMEOUT, proc=item.proc)
                names: dict[str, set[str]] = {}
                for item in started:
                    with urllib.request.urlopen(item.metrics_url, timeout=10) as response:
                        names.setdefault(item.command, set()).update(exported_names(response.read().decode()))
                # The worker runs exactly the values set's subscriptions, from the mounted file.
                (stream,) = [s for s in started if s.command == "stream"]
                with urllib.request.urlopen(stream.metrics_url, timeout=10) as response:
                    gauge = re.search(
                        r"^eventfed_stream_subscriptions (\S+)$", response.read().decode(), re.M
                    )
                assert gauge and float(gauge.group(1)) == len(
                    values.get("subscriptions", DEFAULT_VALUES["subscriptions"])
                )
            finally:
                failures = []
                for item in started:
                    code = item.proc.terminate(timeout=60)
                    if code not in (0, -15):
                        failures.append(f"{item.deployment} exited {code}:\n{item.proc.log()[-2000:]}")
                assert not failures, "\n".join(failures)
            RUNS[name] = names
            return names
        finally:
            nova.stop()

    try:
        yield run
    finally:
        plain = brokers["plain"]
        if plain.created:
            for future in (
                AdminClient({"bootstrap.servers": plain.admin_bootstrap})
                .delete_topics(plain.created)
                .values()
            ):
                # Cleanup of a shared broker: a topic left over is harmless.
                with contextlib.suppress(Exception):
                    future.result(timeout=30)
        for vhost in vhosts:
            rabbitmqctl("delete_vhost", vhost)
        if mtls_env:
            subprocess.run([str(ROOT / "scripts/kafka"), "stop"], env={**os.environ, **mtls_env}, check=False)
            shutil.rmtree(ROOT / ".run" / f"kafka-{mtls_env['KAFKA_PORT']}", ignore_errors=True)


@pytest.mark.parametrize("values", list(VALUES_SETS))
def test_every_rendered_container_starts_with_its_configuration(values: str, run_values_set: Any) -> None:
    names = run_values_set(values)
    expected = {"stream", "api"}
    if any(v.get("mode", "listen") != "poll" for v in local_values_vims(values)):
        expected.add("listen")
    if any(v.get("mode", "listen") != "listen" for v in local_values_vims(values)):
        expected.add("poll")
    assert set(names) == expected


def local_values_vims(name: str) -> list[dict[str, Any]]:
    path = VALUES_SETS[name]
    vims: list[dict[str, Any]] = (yaml.safe_load(path.read_text()) if path else {}).get("vims", [])
    return vims


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: label lists, matchers and strings left out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    return set(re.findall(r"\b(eventfed_[a-z0-9_]+)\b", expr))


def test_alerts_and_dashboard_name_only_metrics_the_processes_export(run_values_set: Any) -> None:
    # poll-modes runs every command: listen, poll, stream and api.
    exported = set().union(*run_values_set("poll-modes").values())
    result = subprocess.run(
        [helm_binary(), "template", "onap", str(CHART), "-f", str(VALUES_SETS["onap-multi-vim"]),
         "--set", "metrics.prometheusOperator=always"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    docs = docs_of(result.stdout)
    (rule,) = [doc for doc in docs if doc["kind"] == "PrometheusRule"]
    (dashboard,) = [
        doc for doc in docs if doc["kind"] == "ConfigMap" and "eventfed.json" in doc.get("data", {})
    ]
    expressions = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    board = json.loads(dashboard["data"]["eventfed.json"])
    expressions += [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    expressions += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    assert len(expressions) > 10
    named = set().union(*(promql_metric_names(e) for e in expressions))
    assert named, "no eventfed metric named"
    assert named <= exported, f"named but not exported: {sorted(named - exported)}"
    # And the alerts cover what operators asked for.
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert {"EventfedNotReady", "EventfedVimSilent", "EventfedStreamFallingBehind", "EventfedDeadLetters",
            "EventfedStuckActions", "EventfedVmFailures", "EventfedVmsInError"} <= alerts  # fmt: skip
