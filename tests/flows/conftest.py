"""Fixtures of the flow tests: Prefect's temporary local server.

The Prefect environment (a temporary ``PREFECT_HOME``, offline settings) is set up once for
the whole suite in ``tests/conftest.py``, before any test imports Prefect.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def prefect_server():
    """Prefect's temporary local server for the whole session (about 20 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
