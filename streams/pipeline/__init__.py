"""The worker's processing, as stages from batch to batch; :mod:`streams.engine` declares how they chain.

Reports: decode -> deduplicate -> classify -> triage split -> merge -> route -> build records -> emit
Readings: decode -> known kind -> detect -> merge -> route -> build records -> emit -> save detectors
Triage decisions: parse -> check -> merge -> route -> build records -> emit -> leave the queue
"""
