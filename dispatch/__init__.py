"""Geo-rule dispatch: city packs, jurisdiction layers, rules, unit selection and explanations.

Plain Python over plain data: no Kafka, no Faust, no imports from the other
domain packages. Redis is reached only through :mod:`dispatch.store`, with a
client the caller passes in.
"""

from dispatch.assign import Assignment, Dispatcher
from dispatch.citypack import CityPack, load_city_pack
from dispatch.errors import DispatchError, InvalidCityPack, NoResponsibleUnit
from dispatch.lint import LintReport, lint_city_pack
from dispatch.reroute import Reroute, reroute

__all__ = [
    "Assignment",
    "CityPack",
    "Dispatcher",
    "DispatchError",
    "InvalidCityPack",
    "LintReport",
    "NoResponsibleUnit",
    "Reroute",
    "lint_city_pack",
    "load_city_pack",
    "reroute",
]
