"""Geo-rule dispatch: city packs, jurisdiction layers, unit selection and explanations.

Plain Python over plain data: no Kafka, no Faust, no imports from the other
domain packages.
"""

from dispatch.assign import Assignment, Dispatcher
from dispatch.citypack import CityPack, load_city_pack
from dispatch.errors import DispatchError, InvalidCityPack, NoResponsibleUnit

__all__ = [
    "Assignment",
    "CityPack",
    "Dispatcher",
    "DispatchError",
    "InvalidCityPack",
    "NoResponsibleUnit",
    "load_city_pack",
]
