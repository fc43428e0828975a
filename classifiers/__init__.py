"""Event discovery: text classification of reports and anomaly detection on sensor readings.

Plain Python over plain data: no Kafka, no Faust, no imports from the other
domain packages.
"""

from classifiers.anomaly import AdaptiveDetector, AdaptiveState, DetectorMode, detector_for
from classifiers.anomaly_bank import (
    CLEARED_CODE,
    OPENED_CODE,
    AdaptiveBank,
    BankStep,
    alarm_change,
    step_many,
    step_readings,
)
from classifiers.sensors import AlarmChange, DetectorState, ThresholdDetector
from classifiers.text import Classification, TextClassifier, normalise_text, seed_classifier

__all__ = [
    "CLEARED_CODE",
    "OPENED_CODE",
    "AdaptiveBank",
    "AdaptiveDetector",
    "AdaptiveState",
    "AlarmChange",
    "BankStep",
    "Classification",
    "DetectorState",
    "DetectorMode",
    "TextClassifier",
    "ThresholdDetector",
    "alarm_change",
    "detector_for",
    "normalise_text",
    "seed_classifier",
    "step_many",
    "step_readings",
]
