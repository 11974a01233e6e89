"""Fault injection: every failure that was once found by trying tfrs_movies as a new user (and
an attacker) would, reproduced so that none comes back (issue 16).

Run alone with ``pytest -m faults``. Each section belongs to one part of the package.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.faults

# --- run directories: --overwrite, failed starts, odd workdirs, manifests (rundir/train) ---

# --- data files: BOM, extra fields (data) ---

# --- Python API strict types (recommend) ---

# --- HTTP strict types and titles with "/" (serving) ---

# --- CLI: one error line, quiet logs, --resume with nothing to resume (cli) ---
