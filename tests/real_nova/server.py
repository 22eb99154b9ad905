"""Real Nova in one process, for tests: its REST API on 127.0.0.1, its notifications on RabbitMQ.

Run with the Nova virtual environment that `make nova-env` builds (`.venv-nova/bin/python`):

    .venv-nova/bin/python tests/real_nova/server.py \
        --transport-url rabbit://guest:guest@127.0.0.1:5672/myvhost \
        --notification-format both --notify-on-state-change vm_and_task_state

It runs Nova 34's own code (API, conductor, scheduler and two computes on the fake virt driver,
sqlite, in-process Placement, Glance/Neutron/Cinder fixtures) assembled by Nova's functional-test
base class. Two things differ from Nova's functional tests:

- notifications are not captured in memory: they go through oslo.messaging (driver messagingv2,
  exchange ``nova``) to the RabbitMQ URL given, built as ``nova.rpc.init()`` builds them, with the
  same ``notification_format`` switch. RPC between Nova's services stays on the in-process
  ``fake://`` transport; only the notification path is the real one.
- the compute API is served over real HTTP (``eventlet.wsgi``) on 127.0.0.1, so another process
  (the tests, ``eventfed poll``) drives lifecycles with plain HTTP.

Authentication is Nova's functional-test one (keystonemiddleware stubbed out, the request context
taken from ``X-Auth-User``, ``X-Auth-Project-Id`` and ``X-Roles``). A request without them acts as
the admin user of project ``PROJECT_ID``. With ``--token``, every API request must carry
``X-Auth-Token: <token>``, else 401: enough to test a client's handling of a refused credential.

``POST /fixture/config`` with a JSON object of Nova options (only ``reclaim_instance_interval``
for now) changes them at run time: ``DELETE`` of a server is a soft delete while that interval
is above 0, as in Nova.

When ready it prints one line to stdout: ``REAL_NOVA_READY {json}`` with ``api_url``,
``project_id``, ``images`` and ``hosts``. SIGTERM or SIGINT stops the services and exits 0.

Checked against nova 34.0.0 (the pins in requirements.txt): it uses Nova's test internals
(``_IntegratedTestBase``, ``OSAPIFixture.app``), which may move in another release.
"""

# Importing nova_internals imports nova.tests.functional, which applies eventlet's monkey
# patching; it must come before anything that opens sockets (kombu, oslo.messaging). Run as a
# script, this directory is the first entry of sys.path.
from nova_internals import IntegratedTestBase, run_cleanups  # noqa: I001

import argparse
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import eventlet
import eventlet.wsgi
import oslo_messaging as messaging
from oslo_config import cfg

from nova import rpc
from nova.tests.fixtures import GlanceFixture
from nova.tests.fixtures.nova import PROJECT_ID

CONF = cfg.CONF
HOSTS = ("compute", "compute2")
STATE_CHANGES = ("none", "vm_state", "vm_and_task_state")
FORMATS = ("both", "versioned", "unversioned")
# Options POST /fixture/config may change, with their types.
RUNTIME_OPTIONS: dict[str, type] = {"reclaim_instance_interval": int}

StartResponse = Callable[..., Any]


class _RealNova(IntegratedTestBase):
    """Nova's functional-test stack, its notifiers swapped for real ones before services start."""

    ADMIN_API = True
    microversion = "latest"
    # Casts stay asynchronous, as in a deployment: an action returns 202 before compute is done.
    CAST_AS_CALL = False

    options: argparse.Namespace

    def runTest(self) -> None:
        """unittest needs a test method; this case is only ever set up and cleaned up."""

    def _setup_services(self) -> None:
        opts = self.options
        # The API's paste pipeline ships in the venv's etc/, not next to the package.
        self.flags(api_paste_config=os.path.join(sys.prefix, "etc", "nova", "api-paste.ini"), group="wsgi")
        self.flags(notification_format=opts.notification_format, group="notifications")
        if opts.notify_on_state_change != "none":
            self.flags(notify_on_state_change=opts.notify_on_state_change, group="notifications")
        self.flags(
            driver=["messagingv2"], transport_url=opts.transport_url, group="oslo_messaging_notifications"
        )
        # One compute host could not take a cold migration: two are started.
        self.flags(allow_resize_to_same_host=True)
        self.flags(reclaim_instance_interval=opts.reclaim_instance_interval)
        legacy, versioned = _notifiers(opts.notification_format)
        self.addCleanup(legacy.transport.cleanup)
        # Before the services start: nova.compute.api.API keeps the notifier it got at start-up.
        self.stub_out("nova.rpc.LEGACY_NOTIFIER", legacy)
        self.stub_out("nova.rpc.NOTIFIER", versioned)
        super()._setup_services()
        self._start_compute(HOSTS[1])

    def _setup_compute_service(self) -> Any:
        return self._start_compute(HOSTS[0])


def _notifiers(notification_format: str) -> tuple[messaging.Notifier, messaging.Notifier]:
    """The legacy and versioned notifiers as nova.rpc.init() makes them, on the real transport."""
    transport = messaging.get_notification_transport(CONF, allowed_remote_exmods=rpc.get_allowed_exmods())
    serializer = rpc.RequestContextSerializer(rpc.JsonPayloadSerializer())
    legacy_driver = None if notification_format in ("both", "unversioned") else "noop"
    versioned_driver = None if notification_format in ("both", "versioned") else "noop"
    legacy = messaging.Notifier(transport, serializer=serializer, driver=legacy_driver)
    versioned = messaging.Notifier(
        transport,
        serializer=serializer,
        driver=versioned_driver,
        topics=CONF.notifications.versioned_notifications_topics,
    )
    return legacy, versioned


def _json_response(start_response: StartResponse, status: str, body: Any) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def wrap_api(nova_app: Any, case: _RealNova, token: str | None) -> Callable[..., Iterable[bytes]]:
    """Nova's WSGI app behind the fixture's own rules: default identity, optional token, /fixture."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/fixture/config" and environ.get("REQUEST_METHOD") == "POST":
            return _configure(case, environ, start_response)
        if token is not None and environ.get("HTTP_X_AUTH_TOKEN") != token:
            return _json_response(
                start_response,
                "401 Unauthorized",
                {"error": {"code": 401, "message": "bad or missing token"}},
            )
        environ.setdefault("HTTP_X_AUTH_USER", "admin")
        environ.setdefault("HTTP_X_USER_ID", environ["HTTP_X_AUTH_USER"])
        environ.setdefault("HTTP_X_AUTH_PROJECT_ID", PROJECT_ID)
        environ.setdefault("HTTP_X_ROLES", "reader,member,admin")
        return nova_app(environ, start_response)  # type: ignore[no-any-return]

    return app


def _configure(case: _RealNova, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        changes = {name: RUNTIME_OPTIONS[name](value) for name, value in body.items()}
    except (ValueError, KeyError, TypeError) as exc:
        return _json_response(start_response, "400 Bad Request", {"error": f"{type(exc).__name__}: {exc}"})
    case.flags(**changes)
    return _json_response(start_response, "200 OK", {name: getattr(CONF, name) for name in RUNTIME_OPTIONS})


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport-url", required=True, help="rabbit://user:pass@host:port/vhost")
    parser.add_argument("--notification-format", choices=FORMATS, default="both")
    parser.add_argument("--notify-on-state-change", choices=STATE_CHANGES, default="none")
    parser.add_argument("--reclaim-instance-interval", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--token", default=None, help="require X-Auth-Token to equal this")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    opts = parse_args(argv)
    _RealNova.options = opts
    case = _RealNova()
    try:
        case.setUp()
    except Exception:
        traceback.print_exc()
        run_cleanups(case)
        return 1
    stopping = eventlet.Event()

    def stop(signum: int, frame: Any) -> None:
        if not stopping.ready():
            stopping.send(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sock = eventlet.listen((opts.host, opts.port))
    port = sock.getsockname()[1]
    app = wrap_api(case.api_fixture.app(), case, opts.token)
    server = eventlet.spawn(eventlet.wsgi.server, sock, app, log_output=False, debug=False)
    ready = {
        "api_url": f"http://{opts.host}:{port}/v2.1",
        "project_id": PROJECT_ID,
        "images": [GlanceFixture.image1["id"], GlanceFixture.image2["id"]],
        "hosts": list(HOSTS),
        "pid": os.getpid(),
    }
    print("REAL_NOVA_READY " + json.dumps(ready), flush=True)
    # The main greenthread sleeps in short steps so the signal handler gets to run.
    while not stopping.ready():
        eventlet.sleep(0.2)
    server.kill()
    sock.close()
    run_cleanups(case)
    print("REAL_NOVA_STOPPED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
