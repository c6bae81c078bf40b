"""Exact running median, NaN-aware, by ranking each row once and scanning a bitset of ranks.

Preprocessing's continuum is a centred running median of 1000 channels that skips masked
(NaN) channels. A double heap (bottleneck's ``move_median``) spends ~0.9 ms on one spectrum of
12 217 channels, most of preprocessing's time. Here each row's finite values are sorted once (an
LSD radix sort of the float's bits, ties in channel order) and each channel is known by its rank.
The window is a bitset over the ranks: a channel entering or leaving it sets or clears one bit,
and a cursor (a rank, with the count of the window's ranks below it) moves to the median by a
step or two per channel, each found with one bit scan in a 64-bit word. Like Suomela's
sort-median ("Median filtering is equivalent to sorting", arXiv:1406.1717), which this module
implemented with blocks of the window's width as linked lists until 2026-12-04, the work is a
sort and a constant per channel; the bitset's steps are cheaper than the lists' pointer chasing
and data-dependent branches (0.16 against 0.24 ms per spectrum, BENCHMARKS.md). The result
equals the double heap's (tests; only the sign of a zero median may differ).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = ["running_median_rows"]

_RADIX_BITS = 11  # three passes over 32-bit keys (11 bits: 7% faster than four of 8 bits, 16: slower)
_RADIX = 1 << _RADIX_BITS
_DIGITS = -(-32 // _RADIX_BITS)
_ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)


@numba.njit(cache=True, nogil=True)
def _rank_finite(values, order_keys, order_index, tmp_keys, tmp_index, sorted_values, rank_of):
    """Sort a row's finite values; return how many there are.

    Writes ``sorted_values[:count]`` (ascending; ties in the order of the channels) and
    ``rank_of[j]``, the rank of channel j in that order (-1 for NaN).
    """
    bits_of = values.view(np.uint32)
    count = 0
    for i in range(values.size):
        rank_of[i] = -1
        if not np.isnan(values[i]):
            bits = bits_of[i]
            # order-preserving map of the IEEE bits to unsigned integers (-0.0 sorts just
            # before 0.0; the heap takes them as equal, and either is a zero)
            if bits & np.uint32(0x80000000):
                bits = ~bits
            else:
                bits = bits | np.uint32(0x80000000)
            order_keys[count] = bits
            order_index[count] = i
            count += 1
    # every digit's histogram in one pass over the keys; a digit that all keys share needs no pass
    digit_mask = np.uint32(_RADIX - 1)
    counts = np.zeros((_DIGITS, _RADIX), dtype=np.int32)
    for k in range(count):
        key = order_keys[k]
        for digit in range(_DIGITS):
            counts[digit, (key >> np.uint32(digit * _RADIX_BITS)) & digit_mask] += 1
    src_keys, src_index, dst_keys, dst_index = order_keys, order_index, tmp_keys, tmp_index
    for digit in range(_DIGITS):
        shift = np.uint32(digit * _RADIX_BITS)
        if count == 0 or counts[digit, (src_keys[0] >> shift) & digit_mask] == count:
            continue
        total = 0
        for r in range(_RADIX):
            c = counts[digit, r]
            counts[digit, r] = total
            total += c
        for k in range(count):
            key = src_keys[k]
            r = (key >> shift) & digit_mask
            slot = counts[digit, r]
            dst_keys[slot] = key
            dst_index[slot] = src_index[k]
            counts[digit, r] = slot + 1
        src_keys, dst_keys = dst_keys, src_keys
        src_index, dst_index = dst_index, src_index
    order_index = src_index
    for k in range(count):
        i = order_index[k]
        sorted_values[k] = values[i]
        rank_of[i] = k
    return count


@intrinsic
def _trailing_zeros(typingctx, word):
    """Trailing zero bits of a non-zero uint64 (LLVM's cttz: one instruction)."""
    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))
    return types.uint64(types.uint64), codegen


@intrinsic
def _leading_zeros(typingctx, word):
    """Leading zero bits of a non-zero uint64 (LLVM's ctlz: one instruction)."""
    def codegen(context, builder, signature, args):
        return builder.ctlz(args[0], ir.Constant(ir.IntType(1), 1))
    return types.uint64(types.uint64), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _next_present(present, rank):
    """The smallest rank >= ``rank`` in the window (there must be one)."""
    word = rank >> 6
    bits = present[word] & (_ALL_BITS << np.uint64(rank & 63))
    while bits == 0:
        word += 1
        bits = present[word]
    return (word << 6) + np.int64(_trailing_zeros(bits))


@numba.njit(cache=True, nogil=True, inline="always")
def _previous_present(present, rank):
    """The largest rank < ``rank`` in the window (there must be one)."""
    last = rank - 1
    word = last >> 6
    bits = present[word] & (_ALL_BITS >> np.uint64(63 - (last & 63)))
    while bits == 0:
        word -= 1
        bits = present[word]
    return (word << 6) + 63 - np.int64(_leading_zeros(bits))


@numba.njit(cache=True, nogil=True)
def _median_row(values, window, half, out, order_keys, order_index, tmp_keys, tmp_index, sorted_values, rank_of,
                present):
    """Centred running median of one row: ``out[j]`` is the median of the finite values in
    ``values[j - (window - 1 - half) : j + half + 1]`` (clipped), NaN where there are none. The
    other arguments are work arrays at least as long as the row (``present``: 1/64 of it, + 2)."""
    n = values.size
    count = _rank_finite(values, order_keys, order_index, tmp_keys, tmp_index, sorted_values, rank_of)
    present[:count // 64 + 2] = 0
    cursor = 0  # a rank; `before` of the window's ranks are below it
    before = 0
    live = 0
    for j in range(n + half):  # channel j enters the window and channel j - window leaves it
        if j < n:
            r = rank_of[j]
            if r >= 0:
                present[r >> 6] |= np.uint64(1) << np.uint64(r & 63)
                before += r < cursor
                live += 1
        if j >= window:
            r = rank_of[j - window]
            if r >= 0:
                present[r >> 6] &= ~(np.uint64(1) << np.uint64(r & 63))
                before -= r < cursor
                live -= 1
        o = j - half  # the output channel whose window ends at j
        if o < 0:
            continue
        if live == 0:
            out[o] = np.nan
            continue
        rank = (live - 1) // 2
        while before < rank:
            cursor = _next_present(present, cursor) + 1
            before += 1
        while before > rank:
            cursor = _previous_present(present, cursor)
            before -= 1
        low_rank = _next_present(present, cursor)
        low = sorted_values[low_rank]
        if live % 2:
            out[o] = low
        else:
            high = sorted_values[_next_present(present, low_rank + 1)]
            out[o] = (np.float64(low) + np.float64(high)) / 2.0
    return out


@numba.njit(cache=True, nogil=True)
def _median_rows(values, window, half, out):
    n = values.shape[1]
    order_keys, tmp_keys = np.empty(n, dtype=np.uint32), np.empty(n, dtype=np.uint32)
    order_index, tmp_index = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    sorted_values, rank_of = np.empty(n, dtype=np.float32), np.empty(n, dtype=np.int64)
    present = np.empty(n // 64 + 2, dtype=np.uint64)
    for row in range(values.shape[0]):
        _median_row(values[row], window, half, out[row], order_keys, order_index, tmp_keys, tmp_index,
                    sorted_values, rank_of, present)
    return out


def running_median_rows(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running median of each row, ignoring NaN, equal to bottleneck's on NaN padding.

    Parameters
    ----------
    values : numpy.ndarray, shape (N, M), float32
        NaN where masked.
    window : int
        Window width, channels; the window of channel j is ``[j - (window - 1 - window // 2),
        j + window // 2]``, clipped to the row.

    Returns
    -------
    numpy.ndarray, shape (N, M), float32
        NaN only where a whole window is NaN.
    """
    values = np.ascontiguousarray(values, dtype=np.float32)
    out = np.empty(values.shape, dtype=np.float32)
    return _median_rows(values, int(window), int(window) // 2, out)
