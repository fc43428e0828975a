"""The data tests share the integration fixtures (real Redis, namespaces)."""

from tests.integration.conftest import namespace, redis_client, redis_url  # noqa: F401
