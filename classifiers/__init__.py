"""Event discovery: text classification of reports and anomaly detection on sensor readings.

Plain Python over plain data: no Kafka, no Faust, no imports from the other
domain packages.
"""

from classifiers.sensors import AlarmChange, DetectorState, ThresholdDetector
from classifiers.text import Classification, TextClassifier, normalise_text, seed_classifier

__all__ = [
    "AlarmChange",
    "Classification",
    "DetectorState",
    "TextClassifier",
    "ThresholdDetector",
    "normalise_text",
    "seed_classifier",
]
