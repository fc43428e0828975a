"""The topic catalogue: names of the public streams, derived from one prefix."""

from __future__ import annotations

from dataclasses import dataclass

CONTRACT_VERSION = 1

DAY_MS = 86_400_000
# Cleanup and retention each stream gets when CityLoop creates it (docs/OPERATIONS.md, "Topics on a production
# cluster"). The worker rebuilds Redis's state from incidents, tasks and feedback when Redis loses it
# (streams/rebuild.py), so those keep what open orders need: incidents compacted (the latest record of each), tasks
# and feedback for 90 days (an order open longer than that would lose its dispatched event).
STREAM_CONFIGS: dict[str, dict[str, str]] = {
    "reports": {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    "readings": {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    "incidents": {"cleanup.policy": "compact"},
    "tasks": {"cleanup.policy": "delete", "retention.ms": str(90 * DAY_MS)},
    "feedback": {"cleanup.policy": "delete", "retention.ms": str(90 * DAY_MS)},
    "deadletter": {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)},
}


@dataclass(frozen=True)
class Topics:
    """Names of CityLoop's topics for one deployment (one prefix)."""

    prefix: str = "cityloop"

    @property
    def reports(self) -> str:
        return f"{self.prefix}.reports"

    @property
    def readings(self) -> str:
        return f"{self.prefix}.readings"

    @property
    def incidents(self) -> str:
        return f"{self.prefix}.incidents"

    @property
    def tasks(self) -> str:
        return f"{self.prefix}.tasks"

    @property
    def feedback(self) -> str:
        return f"{self.prefix}.feedback"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}.deadletter"

    def inputs(self) -> list[str]:
        """The topics a worker consumes (in ``Settings.ingest_group``): their lag is what workers scale on."""
        return [self.reports, self.readings, self.feedback]

    def config(self, name: str) -> dict[str, str]:
        """The topic configs CityLoop sets when it creates topic ``name`` of this prefix ({} for another topic)."""
        stream = name.removeprefix(f"{self.prefix}.")
        return dict(STREAM_CONFIGS.get(stream, {})) if name.startswith(f"{self.prefix}.") else {}

    def all(self) -> list[str]:
        return [
            self.reports,
            self.readings,
            self.incidents,
            self.tasks,
            self.feedback,
            self.deadletter,
        ]
