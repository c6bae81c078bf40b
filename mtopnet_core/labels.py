"""Training labels (paper, section 3.1): Gaussian redshift PDFs, line-location masks, and the
standardised scalar labels, for every task of :mod:`mtopnet_core.tasks`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mtopnet_core import grid
from mtopnet_core.lines import line_wavelengths
from mtopnet_core.tasks import TASKS

if TYPE_CHECKING:
    from mtopnet_core.preprocessing import Standardiser

__all__ = ["redshift_pdf_labels", "line_channels", "line_location_labels", "line_location_marks", "task_labels",
           "REDSHIFT_LABEL_SIGMA", "LINE_HALF_WIDTH"]

REDSHIFT_LABEL_SIGMA: float = 0.001
"""Standard deviation of the Gaussian redshift label (paper: 0.001)."""
LINE_HALF_WIDTH: int = 5
"""Channels marked on each side of an expected line (paper: 5)."""


def redshift_pdf_labels(z: np.ndarray, sigma: float = REDSHIFT_LABEL_SIGMA) -> np.ndarray:
    """Gaussian redshift PDFs over the redshift bins, one per spectrum.

    Parameters
    ----------
    z : numpy.ndarray, shape (N,)
        True redshifts, inside the binned range 0.7-3.1.
    sigma : float
        Width of the Gaussian in z; 0 gives a one-hot vector.

    Returns
    -------
    numpy.ndarray, shape (N, 800), float32
        Each row sums to 1.
    """
    z = np.atleast_1d(np.asarray(z, dtype=np.float64))
    bins = grid.redshift_to_bin(z)  # validates the range
    if sigma == 0:
        labels = np.zeros((z.size, grid.N_Z_BINS), dtype=np.float32)
        labels[np.arange(z.size), bins] = 1.0
        return labels
    centres = grid.redshift_bin_centres()
    pdf = np.exp(-0.5 * ((centres[None, :] - z[:, None]) / sigma) ** 2)
    return (pdf / pdf.sum(axis=1, keepdims=True)).astype(np.float32)


def line_channels(z: np.ndarray) -> np.ndarray:
    """The grid channel nearest to every Table 1 line at each redshift.

    Parameters
    ----------
    z : numpy.ndarray, shape (N,)
        Redshifts.

    Returns
    -------
    numpy.ndarray, shape (N, 42), int64
        Channel index, or -1 where the line falls outside every pixel of the grid (beyond its
        ends or in the YJ-H gap).
    """
    z = np.atleast_1d(np.asarray(z, dtype=np.float64))
    wave = np.asarray(grid.wavelength_grid())
    lower, upper = grid.pixel_edges()
    observed = line_wavelengths()[None, :] * (1.0 + z[:, None])
    nearest = np.clip(np.searchsorted(wave, observed), 1, wave.size - 1)
    nearest = np.where(np.abs(wave[nearest - 1] - observed) < np.abs(wave[nearest] - observed),
                       nearest - 1, nearest)
    on_grid = (observed >= lower[nearest]) & (observed <= upper[nearest])
    return np.where(on_grid, nearest, -1)


def line_location_labels(z: np.ndarray, half_width: int = LINE_HALF_WIDTH) -> np.ndarray:
    """Line-location masks: 1 within ``half_width`` channels of every Table 1 line on the grid.

    Parameters
    ----------
    z : numpy.ndarray, shape (N,)
        Redshifts.
    half_width : int
        Channels marked on each side of the channel nearest to a line.

    Returns
    -------
    numpy.ndarray, shape (N, 12217), uint8
    """
    z = np.atleast_1d(z)
    labels = np.zeros((z.size, grid.N_CHANNELS), dtype=np.uint8)
    labels[line_location_marks(z, half_width)] = 1
    return labels


def line_location_marks(z: np.ndarray, half_width: int = LINE_HALF_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Where :func:`line_location_labels` puts its ones, without the (N, 12217) array.

    Parameters
    ----------
    z : numpy.ndarray, shape (N,)
        Redshifts.
    half_width : int
        Channels marked on each side of the channel nearest to a line.

    Returns
    -------
    row, channel : numpy.ndarray, shape (M,), int64
        Each mark's spectrum and channel (a channel near two lines appears twice).
    """
    nearest = line_channels(z)
    rows, cols = np.nonzero(nearest >= 0)
    centre = nearest[rows, cols]
    detector = grid.channel_index()
    marked_rows, marked_channels = [], []
    for offset in range(-half_width, half_width + 1):
        target = np.clip(centre + offset, 0, grid.N_CHANNELS - 1)
        same = detector[target] == detector[centre]  # never mark across a detector boundary
        marked_rows.append(rows[same])
        marked_channels.append(target[same])
    return np.concatenate(marked_rows), np.concatenate(marked_channels)


def task_labels(catalogue: pd.DataFrame, standardiser: Standardiser) -> dict[str, np.ndarray]:
    """The label of every task for some catalogue rows, keyed by task name (float32).

    Parameters
    ----------
    catalogue : pandas.DataFrame
        N rows with ``z`` and a column per scalar task.
    standardiser : Standardiser
        Statistics of the training split.

    Returns
    -------
    dict
        ``line_mask`` labels (N, 12217), ``redshift_pdf`` labels (N, 800), scalar labels (N, 1).
    """
    z = catalogue["z"].to_numpy()
    labels = {}
    for task in TASKS:
        if task.label == "line_mask":
            labels[task.name] = line_location_labels(z)
        elif task.label == "redshift_pdf":
            labels[task.name] = redshift_pdf_labels(z)
        else:
            labels[task.name] = standardiser.label(task.name, catalogue[task.name].to_numpy())[:, None]
    return {name: value.astype(np.float32) for name, value in labels.items()}
