"""``cityloop route PACK --csv``'s path against the Python API it wraps, on the same rows in the same run.

    python -m bench.route_csv [--pack DIR] [--copies 10] [--repeat 3]

The rows are NYC's 2026 extract (../shared/data/nyc, 10,000 requests) repeated ``--copies`` times, written
to one CSV. Timed, each the median of ``--repeat`` runs after one warm-up:

* **route_csv**: ``streams.routebatch.route_csv`` from the CSV file to a CSV file: reading and writing every
  row, resolving category names, checking coordinates, routing in chunks (what ``cityloop route --csv`` does,
  without the process start and the pack load, which are printed apart);
* **assign_batch**: ``Dispatcher.assign_batch`` alone on the routable rows, already parsed: the ceiling.

Without ``--pack`` a pack is built first from the extracts with ``cityloop city init`` (as README step 2).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.nyc311 import NYC_311
from dispatch import Dispatcher, load_city_pack
from streams.routebatch import category_codes, route_csv

NYC = NYC_311.parent


def build_pack(out: Path) -> Path:
    args = [sys.executable, "-m", "streams.cli", "city", "init", str(out), "--name", "New York City", "--timezone",
            "America/New_York", "--layer", f"districts={NYC / 'boundaries/dcp2013_community_districts.geojson'}",
            "--from-311", str(NYC_311), "--category-col", "Complaint Type", "--agency-col", "Agency"]  # fmt: skip
    subprocess.run(args, check=True, capture_output=True, text=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", type=Path)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        pack = load_city_pack(args.pack or build_pack(root / "pack"))
        load_s = time.perf_counter() - started
        source = NYC_311 / "nyc311_2026-04-11_latest10k.csv"
        with source.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        big = root / "in.csv"
        with big.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            for _ in range(args.copies):
                writer.writerows(rows)
        total = len(rows) * args.copies

        def by_csv() -> float:
            with big.open(newline="", encoding="utf-8") as fin, (root / "out.csv").open("w", newline="") as fout:
                began = time.perf_counter()
                route_csv(pack, fin, fout, category_col="complaint_type", lat_col="latitude", lon_col="longitude")
                return time.perf_counter() - began

        codes = category_codes(pack)
        keep = [r for r in rows if r["latitude"] and codes.get(" ".join(r["complaint_type"].split()).casefold())]
        keep = keep * args.copies
        categories = [codes[" ".join(r["complaint_type"].split()).casefold()] for r in keep]
        lats = np.array([float(r["latitude"]) for r in keep])
        lons = np.array([float(r["longitude"]) for r in keep])
        dispatcher = Dispatcher(pack)

        def by_api() -> float:
            began = time.perf_counter()
            for start in range(0, len(keep), 20_000):
                dispatcher.assign_batch(categories[start : start + 20_000], lats[start : start + 20_000],
                                        lons[start : start + 20_000])  # fmt: skip
            return time.perf_counter() - began

        results = {}
        for name, run in (("route_csv (file to file)", by_csv), ("assign_batch (API alone)", by_api)):
            run()  # warm-up
            seconds = statistics.median(run() for _ in range(args.repeat))
            rows_done = total if name.startswith("route_csv") else len(keep)
            results[name] = (rows_done, seconds)
        print(f"pack {pack.name} ({len(pack.spec.units)} units) loaded in {load_s:.2f} s; {total:,} rows")
        for name, (done, seconds) in results.items():
            print(f"  {name:28} {done:>9,} rows  {seconds:6.2f} s  {done / seconds:>10,.0f} rows/s (median of "
                  f"{args.repeat})")  # fmt: skip


if __name__ == "__main__":
    main()
