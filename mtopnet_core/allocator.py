"""The C allocator's thresholds for a batch command that frees and allocates a chunk's arrays over and over.

glibc serves an allocation above its mmap threshold with a fresh mapping, which the kernel zeroes
page by page on first touch, and gives freed heap above its trim threshold back to the system.
Its thresholds follow the largest block freed so far, yet the prediction threads of ``mtopnet
predict`` (each chunk's arrays are ~12 MB) still took a few hundred thousand page faults per
10 000 spectra, ~1.5 s of system time. Fixed thresholds above any chunk's array let freed memory
be reused instead: 1.6% of the whole command on an AVX2 machine, within the noise on a faster
AVX-512 one (BENCHMARKS.md). Freed memory then stays with the process, so only a command that
ends with its work asks for this, never the app's server.
"""

from __future__ import annotations

import ctypes
import logging
import sys

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 32 * 2**20
"""Bytes: larger allocations get their own mapping. glibc's most for a dynamic threshold on 64-bit
systems (every version accepts it), above a chunk's largest array (256 x 12 217 float32, 12.5 MB)."""
TRIM_THRESHOLD = 2**30
"""Bytes of free memory at the top of the heap kept before any is given back."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse by fixing its mmap and trim thresholds.

    Returns
    -------
    bool
        True where glibc took both settings; False elsewhere (macOS, Windows, musl), where
        nothing changes.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)  # the symbols already loaded in this process
    if not hasattr(libc, "gnu_get_libc_version"):
        return False
    # Setting either threshold ends glibc's dynamic ones: the trim threshold alone would leave
    # every allocation above 128 kB mapped afresh (2.6 M page faults per 10 000 spectra), so it
    # is set only once the mmap threshold is.
    if not libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        logger.debug("glibc refused an mmap threshold of %d bytes", MMAP_THRESHOLD)
        return False
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
