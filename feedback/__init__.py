"""The closed loop: work orders, SLA clocks, escalation and verification.

Plain Python over plain data: no Kafka, no Faust, no imports from the other
domain packages.
"""

from feedback.sla import BusinessCalendar, SlaClock, deadline_for, parse_span

__all__ = ["BusinessCalendar", "SlaClock", "deadline_for", "parse_span"]
