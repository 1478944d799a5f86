"""Fixtures the integration tests share beyond tests/conftest.py's endpoints."""

from tests.integration.own_cluster import logical_dsn  # noqa: F401 - a module-scoped fixture
