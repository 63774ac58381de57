"""Fixtures of the flow tests: Prefect's temporary local server."""

from __future__ import annotations

# --- Prefect fixtures of the flow tests (flows helper) ------------------------------------
# Prefect reads its settings when first imported: point PREFECT_HOME at a temporary
# directory before any test imports it, so tests never write ~/.prefect.
import atexit as _atexit  # noqa: E402
import os as _os  # noqa: E402
import shutil as _shutil  # noqa: E402
import tempfile as _tempfile  # noqa: E402

import pytest

if "PREFECT_HOME" not in _os.environ:
    _PREFECT_HOME = _tempfile.mkdtemp(prefix="nowcast-test-prefect-")
    _os.environ["PREFECT_HOME"] = _PREFECT_HOME
    _atexit.register(_shutil.rmtree, _PREFECT_HOME, True)


@pytest.fixture(scope="session")
def prefect_server():
    """Prefect's temporary local server for the whole session (about 20 s to start)."""
    from flows._prefect_env import configure

    configure()
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
