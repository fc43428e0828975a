"""One worker's throughput on the dev broker (Tansu) and on Apache Kafka, side by side in one run.

For each broker, a backlog of reports and one of sensor readings (bench/e2e_throughput.py: preloaded, then one worker
drains it; the steady rate is 10% -> 90% of the backlog), ``--runs`` times, alternating, medians printed. On Apache
Kafka the same again with ``CITYLOOP_PROCESSING_GUARANTEE=exactly_once`` (each batch's output and offsets in one
transaction), which Tansu cannot run.

    python -m bench.brokers [--runs 3] [--reports 20000] [--readings 60000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

from bench.common import broker_of, redis_server
from bench.e2e_throughput import backlog_run

EXACTLY_ONCE = {"CITYLOOP_PROCESSING_GUARANTEE": "exactly_once"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--readings", type=int, default=60_000)
    parser.add_argument("--redis", default=os.environ.get("CITYLOOP_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    cases = [
        ("tansu", "at least once", None),
        ("kafka", "at least once", None),
        ("kafka", "exactly once", EXACTLY_ONCE),
    ]
    rates: dict[tuple[str, str, str], list[int]] = {}
    with redis_server(args.redis) as redis_url:
        for kind in ("tansu", "kafka"):
            with broker_of(kind) as bootstrap:
                for run in range(args.runs):
                    for _, guarantee, env in (c for c in cases if c[0] == kind):
                        for stream, count in (("reports", args.reports), ("readings", args.readings)):
                            result = backlog_run(bootstrap, redis_url, stream, count, ceiling=False, progress=False,
                                                 env=env)  # fmt: skip
                            rates.setdefault((kind, guarantee, stream), []).append(result["steady_per_s"])
                            print(f"  {kind:<6} {guarantee:<14} {stream:<9} run {run + 1}: "
                                  f"{result['steady_per_s']:,}/s", flush=True)  # fmt: skip
    print()
    print(f"{'broker':<8}{'output':<16}{'reports/s':>12}{'readings/s':>12}   (one worker, medians of {args.runs})")
    table = []
    for kind, guarantee, _ in cases:
        reports = statistics.median(rates[(kind, guarantee, "reports")])
        readings = statistics.median(rates[(kind, guarantee, "readings")])
        table.append({"broker": kind, "output": guarantee, "reports_per_s": reports, "readings_per_s": readings,
                      "runs": {s: rates[(kind, guarantee, s)] for s in ("reports", "readings")}})  # fmt: skip
        print(f"{kind:<8}{guarantee:<16}{reports:>12,.0f}{readings:>12,.0f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
