"""Which heavy modules a piece of code imports, run in a fresh interpreter (tests of lazy imports)."""

from __future__ import annotations

import json
import subprocess
import sys

__all__ = ["modules_imported_by"]


def modules_imported_by(code: str, watched: tuple[str, ...] = ("tensorflow", "keras", "jax")) -> list[str]:
    """Run ``code`` with ``python -c`` and return the ``watched`` modules it left imported, sorted.

    A failing ``code`` (an assertion in it, say) raises :class:`subprocess.CalledProcessError`.
    """
    probe = (f"{code}\nimport json as _json, sys as _sys\n"
             f"print(_json.dumps(sorted(m for m in {list(watched)!r} if m in _sys.modules)))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])
