"""The topic catalogue: names of the public streams, derived from one prefix."""

from __future__ import annotations

from dataclasses import dataclass

CONTRACT_VERSION = 1


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

    def all(self) -> list[str]:
        return [
            self.reports,
            self.readings,
            self.incidents,
            self.tasks,
            self.feedback,
            self.deadletter,
        ]
