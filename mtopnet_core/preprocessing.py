"""Preprocessing of spectra for M-TOPnet (paper, section 3.1), the same for training and new data.

Per spectrum, on the MOONS grid:

1. mask channels where the sky model exceeds 10^-4.8 photons/s/cm^2/A/arcsec^2 (~15% of them),
   channels with a non-zero quality flag, and non-finite flux or error;
2. estimate the continuum with a running median of 1000 channels that skips masked channels
   (centred; :mod:`mtopnet_core.sort_median`, or bottleneck's double heap, whose values it equals,
   until it is compiled) and does not reach across the 1.35-1.45 micron gap (RI+YJ and H are
   filtered separately);
3. subtract it and divide by the maximum of what is left; masked channels are set to 0, so they
   never carry information into the network;
4. sample the continuum at ten evenly spaced channels (linear interpolation): the continuum
   vector, in 1e-17 erg/s/cm^2/A, standardised later with training-set statistics
   (:class:`Standardiser`).

A spectrum that cannot be used (all masked, all zero, no positive signal left) is flagged in
:attr:`PreprocessedBatch.problems` with a one-line reason; the rest of the batch is processed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import bottleneck as bn
import numpy as np
import pandas as pd

from mtopnet_core import grid
from mtopnet_core.conventions import SKY_MASK_THRESHOLD
from mtopnet_core.spectra import Spectra
from mtopnet_core.tasks import SCALAR_TASKS

__all__ = ["PreprocessingConfig", "PreprocessedBatch", "channel_mask", "running_median", "heap_median_rows",
           "SortMedianLoader", "SORT_MEDIAN", "MIN_ROWS_PER_THREAD", "preprocess",
           "preprocess_stored_rows", "Standardiser"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreprocessingConfig:
    """Settings of the preprocessing; saved with every model.

    Attributes
    ----------
    sky_threshold : float
        Mask channels whose sky model exceeds this, photons/s/cm^2/A/arcsec^2 (paper: 10^-4.8).
    median_window : int
        Width of the running median, channels (paper: 1000).
    n_continuum_points : int
        Length of the continuum vector (paper: 10).
    min_unmasked_fraction : float
        A spectrum with fewer usable channels than this fraction is rejected.
    """

    sky_threshold: float = SKY_MASK_THRESHOLD
    median_window: int = 1000
    n_continuum_points: int = 10
    min_unmasked_fraction: float = 0.2

    def to_dict(self) -> dict:
        """JSON-serialisable copy."""
        return asdict(self)


@dataclass(frozen=True)
class PreprocessedBatch:
    """Network inputs for a batch of spectra.

    Attributes
    ----------
    lines : numpy.ndarray, shape (N, 12217), float32
        Continuum-subtracted spectra divided by their maximum; 0 at masked channels and for
        rejected spectra.
    continuum : numpy.ndarray, shape (N, 10), float32
        Continuum sampled at ten channels, 1e-17 erg/s/cm^2/A (not yet standardised).
    masked : numpy.ndarray, shape (N, 12217), bool
        Channels excluded from the input.
    problems : list of (str or None), length N
        Why a spectrum was rejected, or None if it is usable.
    """

    lines: np.ndarray
    continuum: np.ndarray
    masked: np.ndarray
    problems: list[str | None]

    @property
    def usable(self) -> np.ndarray:
        """True for spectra that were not rejected, shape (N,)."""
        return np.array([p is None for p in self.problems])

    @property
    def coverage(self) -> np.ndarray:
        """Fraction of the grid's channels that feed the network, shape (N,)."""
        return _coverage(self.masked)


def _coverage(masked: np.ndarray) -> np.ndarray:
    # a count, not mean(): the same values without a float64 copy of the mask
    return 1.0 - np.count_nonzero(masked, axis=1) / masked.shape[1]


def channel_mask(flux: np.ndarray, sky: np.ndarray, error: np.ndarray | None = None,
                 quality: np.ndarray | None = None, sky_threshold: float = SKY_MASK_THRESHOLD) -> np.ndarray:
    """Channels to exclude: bright sky, flagged quality, non-finite flux or bad error.

    Parameters
    ----------
    flux : numpy.ndarray, shape (N, 12217)
    sky : numpy.ndarray, shape (12217,)
        Sky model, photons/s/cm^2/A/arcsec^2.
    error : numpy.ndarray, shape (N, 12217), optional
        1-sigma errors; channels with a non-finite or non-positive error are masked.
    quality : numpy.ndarray, shape (N, 12217), optional
        Quality bits, 0 = good.
    sky_threshold : float

    Returns
    -------
    numpy.ndarray, shape (N, 12217), bool
        True where the channel is masked.
    """
    masked = ~np.isfinite(flux) | (np.asarray(sky) > sky_threshold)[None, :]
    if error is not None:
        masked |= ~(np.asarray(error) > 0) | ~np.isfinite(error)
    if quality is not None:
        masked |= np.asarray(quality) != 0
    return masked


class SortMedianLoader:
    """The compiled sort-median (:mod:`mtopnet_core.sort_median`), loaded in a thread once a
    process has taken the running median of :attr:`after` spectra.

    Importing numba and loading its cached build takes ~0.4-0.6 s of a core (compiling, the first
    time after installing, ~4 s), which the sort-median repays within ~1 000 spectra (it saves
    ~0.5 ms on each). Until it is loaded :func:`running_median` uses bottleneck's double heap,
    whose values the sort-median equals; so short jobs never wait for it or share the cores with
    it, and a job that knows it is long (:meth:`expect`) starts loading it at once.
    """

    def __init__(self, after: int = 1024) -> None:
        self.after = after
        self.median_rows: Callable[[np.ndarray, int], np.ndarray] | None = None
        self._spectra = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def get(self, n_spectra: int) -> Callable[[np.ndarray, int], np.ndarray] | None:
        """The sort-median if loaded, else None; counts ``n_spectra`` towards starting its loading."""
        if self.median_rows is None:
            with self._lock:
                self._spectra += n_spectra
                if self._spectra > self.after:
                    self._start_once()
        return self.median_rows

    def expect(self, n_spectra: int) -> None:
        """A job is about to preprocess ``n_spectra``: if that passes :attr:`after`, start loading
        now, so that the load overlaps the job's first chunk (~0.35 s of a core on a fast CPU)
        instead of the job paying the double heap's extra ~0.5 ms on each of its first
        :attr:`after` spectra."""
        if n_spectra > self.after:
            with self._lock:
                self._start_once()

    def _start_once(self) -> None:
        """Start the loading thread unless it was started (the caller holds the lock)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._load, name="sort-median", daemon=True)
            self._thread.start()

    def wait(self) -> bool:
        """Load it now if needed; whether it is in use (False if it could not be compiled)."""
        with self._lock:
            self._start_once()
        self._thread.join()
        return self.median_rows is not None

    def _load(self) -> None:
        try:
            from mtopnet_core.sort_median import running_median_rows
            running_median_rows(np.zeros((1, 8), np.float32), 4)
        except Exception as error:  # noqa: BLE001 - the double heap gives the same values, only slower
            logger.warning("the sort-median could not be compiled (%s); using bottleneck's moving median", error)
            return
        self.median_rows = running_median_rows


SORT_MEDIAN = SortMedianLoader()
"""The process's sort-median loader."""


def heap_median_rows(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running median of each row by bottleneck's double heap, ~0.9 ms per spectrum.

    Parameters
    ----------
    values : numpy.ndarray, shape (N, M), float32
        NaN where masked.
    window : int
        Window width, channels (centred as in :func:`running_median`).

    Returns
    -------
    numpy.ndarray, shape (N, M), float32
    """
    half = window // 2
    # bottleneck's window trails; pad with NaN and shift by half a window to centre it
    padded = np.concatenate([values, np.full((values.shape[0], half), np.nan, np.float32)], axis=1)
    return bn.move_median(padded, window, min_count=1, axis=1)[:, half:]


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Centred running median along the last axis, ignoring NaN, per stretch of the grid.

    The window of channel j is ``[j - (window - 1 - window // 2), j + window // 2]``, clipped to
    its stretch.

    Parameters
    ----------
    values : numpy.ndarray, shape (N, 12217)
        NaN where masked.
    window : int
        Window width, channels.

    Returns
    -------
    numpy.ndarray, shape (N, 12217), float32
        NaN only where a whole window is masked.
    """
    out = np.empty(values.shape, dtype=np.float32)
    median_rows = SORT_MEDIAN.get(len(values)) or heap_median_rows
    for segment in grid.contiguous_segments():
        out[:, segment] = median_rows(values[:, segment].astype(np.float32, copy=False), window)
    return out


MIN_ROWS_PER_THREAD = 16
"""Fewest spectra worth a thread of their own in :func:`preprocess`."""


def preprocess(spectra: Spectra, config: PreprocessingConfig | None = None, threads: int = 1) -> PreprocessedBatch:
    """Turn spectra on the MOONS grid into the network's inputs (paper, section 3.1).

    Parameters
    ----------
    spectra : Spectra
        Flux, error and quality bits (used only to mask channels), the sky model, and the
        object IDs used in the problem messages.
    config : PreprocessingConfig, optional
    threads : int
        Split the spectra over this many threads (at least :data:`MIN_ROWS_PER_THREAD` each): the
        running medians and NumPy's loops release the GIL, so 256 spectra take ~0.15 s on two
        cores instead of ~0.28 s on one. The same values whatever the number.

    Returns
    -------
    PreprocessedBatch
    """
    config = config or PreprocessingConfig()
    threads = min(threads, len(spectra) // MIN_ROWS_PER_THREAD)
    if threads > 1:
        bounds = np.linspace(0, len(spectra), threads + 1).astype(int)
        with ThreadPoolExecutor(threads, thread_name_prefix="mtopnet-preprocess") as pool:
            parts = list(pool.map(lambda start, stop: preprocess(spectra[start:stop], config),
                                  bounds[:-1], bounds[1:]))
        return PreprocessedBatch(lines=np.concatenate([part.lines for part in parts]),
                                 continuum=np.concatenate([part.continuum for part in parts]),
                                 masked=np.concatenate([part.masked for part in parts]),
                                 problems=[problem for part in parts for problem in part.problems])
    flux, names = spectra.flux, spectra.names
    masked = channel_mask(flux, spectra.sky, spectra.error, spectra.mask, config.sky_threshold)
    with np.errstate(invalid="ignore"):
        continuum = running_median(np.where(masked, np.nan, flux), config.median_window)
        # the continuum is NaN only where its whole window is masked, the channel itself included
        residual = np.where(masked, np.float32(0), flux - continuum).astype(np.float32, copy=False)
    peak = residual.max(axis=1)
    usable_fraction = _coverage(masked)
    has_signal = np.any((flux != 0) & ~masked, axis=1)
    problems: list[str | None] = []
    for i, name in enumerate(names):
        if usable_fraction[i] < config.min_unmasked_fraction:
            problems.append(f"{name}: only {100 * usable_fraction[i]:.0f}% of the channels are usable")
        elif not has_signal[i]:
            problems.append(f"{name}: all-zero spectrum")
        elif not peak[i] > 0:
            problems.append(f"{name}: no positive signal above the continuum")
        else:
            problems.append(None)
    usable = np.array([p is None for p in problems], dtype=bool)
    lines = np.zeros_like(residual)
    np.divide(residual, peak[:, None], out=lines, where=usable[:, None])
    return PreprocessedBatch(lines=lines, continuum=_continuum_samples(continuum, usable, config.n_continuum_points),
                             masked=masked, problems=problems)


def _continuum_samples(continuum: np.ndarray, usable: np.ndarray, n_points: int) -> np.ndarray:
    """``n_points`` evenly spaced samples of each usable spectrum's continuum, shape (N, n_points),
    float32 (zeros for the others), interpolating linearly over wholly masked windows."""
    positions = np.linspace(0, grid.N_CHANNELS - 1, n_points)
    # where both channels around every sample are known, interpolating between them alone gives
    # the same values as over every known channel, without a pass over the whole spectrum
    around = np.unique(np.concatenate([np.floor(positions), np.ceil(positions)]).astype(int))
    local = np.isfinite(continuum[:, around]).all(axis=1)
    index = np.arange(grid.N_CHANNELS)
    samples = np.zeros((len(continuum), n_points), dtype=np.float32)
    for i in np.flatnonzero(usable):
        if local[i]:
            samples[i] = np.interp(positions, around, continuum[i, around])
        else:
            known = np.isfinite(continuum[i])
            samples[i] = np.interp(positions, index[known], continuum[i][known])
    return samples


@dataclass(frozen=True)
class Standardiser:
    """Standardisation of the continuum vector and of the scalar labels (paper, section 3.1).

    Fitted on the training split only and saved with the model. The scalar labels are those of
    :data:`~mtopnet_core.tasks.SCALAR_TASKS` (log M*, log SFR).

    Attributes
    ----------
    continuum_mean, continuum_std : tuple of float, length 10
        Per-point statistics of the continuum vector, 1e-17 erg/s/cm^2/A.
    label_mean, label_std : dict of str to float
        Statistics of each scalar task's label, keyed by task name (dex).
    """

    continuum_mean: tuple[float, ...]
    continuum_std: tuple[float, ...]
    label_mean: dict[str, float]
    label_std: dict[str, float]

    @classmethod
    def fit(cls, continuum: np.ndarray, catalogue: pd.DataFrame) -> Standardiser:
        """Statistics of a training split.

        Parameters
        ----------
        continuum : numpy.ndarray, shape (N, 10)
        catalogue : pandas.DataFrame
            N rows with a column per scalar task (``log_mstar``, ``log_sfr``).
        """
        std = np.std(continuum, axis=0)
        return cls(
            continuum_mean=tuple(float(v) for v in np.mean(continuum, axis=0)),
            continuum_std=tuple(float(v) for v in np.where(std > 0, std, 1.0)),
            label_mean={t.name: float(np.mean(catalogue[t.name])) for t in SCALAR_TASKS},
            label_std={t.name: float(np.std(catalogue[t.name])) for t in SCALAR_TASKS},
        )

    def continuum(self, continuum: np.ndarray) -> np.ndarray:
        """Standardised continuum vectors, shape (N, 10), float32."""
        mean, std = np.asarray(self.continuum_mean), np.asarray(self.continuum_std)
        return ((continuum - mean) / std).astype(np.float32)

    def label(self, name: str, values: np.ndarray) -> np.ndarray:
        """Standardised label of the scalar task ``name``."""
        return (np.asarray(values) - self.label_mean[name]) / self.label_std[name]

    def physical(self, name: str, standardised: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`label`: the task's quantity in its own unit (log M* in Msun, log SFR in Msun/yr)."""
        return np.asarray(standardised) * self.label_std[name] + self.label_mean[name]

    def to_dict(self) -> dict:
        """JSON-serialisable copy (flat keys ``<task>_mean``, ``<task>_std``, as model.json has always held)."""
        flat = {"continuum_mean": list(self.continuum_mean), "continuum_std": list(self.continuum_std)}
        for name in self.label_mean:
            flat[f"{name}_mean"], flat[f"{name}_std"] = self.label_mean[name], self.label_std[name]
        return flat

    @classmethod
    def from_dict(cls, values: dict) -> Standardiser:
        """Inverse of :meth:`to_dict`."""
        return cls(continuum_mean=tuple(values["continuum_mean"]), continuum_std=tuple(values["continuum_std"]),
                   label_mean={t.name: float(values[f"{t.name}_mean"]) for t in SCALAR_TASKS},
                   label_std={t.name: float(values[f"{t.name}_std"]) for t in SCALAR_TASKS})


def preprocess_stored_rows(data: str, start: int, stop: int,
                           settings: dict) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """Preprocess rows ``start:stop`` of a stored data set (one unit of parallel work).

    Parameters
    ----------
    data : str
        Data set folder.
    start, stop : int
        Rows to read.
    settings : dict
        :meth:`PreprocessingConfig.to_dict` values.

    Returns
    -------
    tuple
        ``start``; lines (n, 12217) and continuum (n, n_points) float32 with NaN set to 0;
        usable (n,) bool.
    """
    from mtopnet_core.store import open_dataset  # the store is needed by this worker only

    pre = preprocess(open_dataset(data).spectra(slice(start, stop)), PreprocessingConfig(**settings))
    return start, np.nan_to_num(pre.lines, nan=0.0), np.nan_to_num(pre.continuum, nan=0.0), pre.usable
