"""The integration layer's fixtures (real broker, Redis, workers) and the ops fixtures (private Redis, metrics)."""

from tests.integration.conftest import bootstrap, namespace, producer, redis_client, redis_url, topics, workers  # noqa: F401
from tests.ops.fixtures import private_redis, private_workers  # noqa: F401
