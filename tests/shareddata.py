"""The real public data in ../shared/data: where it is, and a mark for the tests that read it.

On a developer's machine without it those tests skip, saying where they looked. In CI (`CITYLOOP_TEST_REQUIRE_DATA=1`,
set by .ci/run) a missing folder stops the run with a collection error naming it, instead of a silent skip: the
figures those tests guard would otherwise vanish from the run unnoticed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class SharedDataMissing(RuntimeError):
    """Raised at collection in CI when a test's data is not there."""


def needs(*paths: Path) -> pytest.MarkDecorator:
    """Skip the tests it marks when any of ``paths`` is not a directory; in CI, refuse to collect them."""
    missing = [str(p.resolve()) for p in paths if not p.is_dir()]
    if missing and os.environ.get("CITYLOOP_TEST_REQUIRE_DATA") == "1":
        raise SharedDataMissing(f"CITYLOOP_TEST_REQUIRE_DATA=1 and the shared data is missing: {', '.join(missing)}")
    return pytest.mark.skipif(bool(missing), reason=f"shared data not found: {', '.join(missing)}")
