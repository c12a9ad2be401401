"""This package's in-process flows and tasks share one test Prefect server."""

import pytest

from tests.prefect_harness import in_process_server

prefect_server = pytest.fixture(scope="package")(in_process_server)
