"""The machine a measurement or a training run happened on, in one line: benchmarks print it
beside their figures and ``scripts/paper_scale.py`` records it with a trained model."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["VECTOR_FLAGS", "cpu_description"]

VECTOR_FLAGS = ("avx512f", "avx512_vnni", "avx512_bf16", "avx2", "fma", "avx_vnni", "amx_tile")
"""The CPU's vector extensions that matter to the network's kernels (named as in ``/proc/cpuinfo``)."""


def cpu_description() -> str:
    """CPU model, core count and the vector extensions that matter to the network's kernels."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", platform.machine()):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    present = [flag for flag in VECTOR_FLAGS if flag in flags]
    return f"{name}, {os.cpu_count()} cores, {' '.join(present) or 'no AVX2'}"
