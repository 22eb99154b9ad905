"""The one place the real-Nova harness (server.py) touches Nova's and testtools' private parts.

Nova has no public way to assemble its services in one process: its functional tests do it in
`_IntegratedTestBase`, and the harness borrows that. testtools keeps a case's cleanups in
`_cleanups`; the harness runs them itself because it never runs the case as a test. Checked
against nova 34.0.0 and the testtools that requirements.txt pins with it.

Importing this module imports nova.tests.functional, which applies eventlet's monkey patching:
import it before anything that opens sockets.
"""

from __future__ import annotations

import traceback
from typing import Any

from nova.tests.functional import integrated_helpers

CHECKED_VERSIONS = {"nova": "34.0.0"}

IntegratedTestBase: Any = integrated_helpers._IntegratedTestBase


def run_cleanups(case: Any) -> None:
    """Run a case's cleanups, last added first, all of them even if one fails."""
    while case._cleanups:
        function, args, kwargs = case._cleanups.pop()
        try:
            function(*args, **kwargs)
        except Exception:
            traceback.print_exc()
