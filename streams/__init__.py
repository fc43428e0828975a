"""CityLoop's stream layer: the Faust app, the topic catalogue, wire records, agents and the CLI.

Only this package imports faust or talks to Kafka; the domain packages
(``classifiers``, ``dispatch``, ``feedback``) are plain Python wired together here.
"""

__version__ = "0.1.0"
