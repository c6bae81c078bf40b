"""Calibration of the redshift PDFs by temperature scaling (Guo et al. 2017), per PDF.

The network's softmax PDFs are under-confident on our mocks: with the first shipped model the
central 68% interval held the true redshift for 97% of the test spectra. One number improves
that (to 92%, BENCHMARKS.md): a temperature ``T`` with which every PDF becomes ``p**(1/T)``,
renormalised (the softmax of the logits divided by ``T``). ``T < 1`` sharpens, ``T > 1``
widens; the peak, and so every redshift estimate and success fraction, is unchanged. ``T`` is
fitted on spectra that were neither trained nor tested on, by minimising the negative
log-likelihood of the true redshift's bin, and stored in the model's metadata, where
:func:`mtopnet_core.inference.predict` applies it.

One temperature for all is not enough: most PDFs are too wide while the failures are too
narrow. The temperature therefore depends on each PDF's own entropy H (natural log, before
tempering): ``ln T = ln T_ref + slope * (H - H_ref)``, both numbers fitted together; a model
calibrated before this kept one number (slope 0).

The NLL of the true bin is dominated by the failures, which want wide PDFs: after the
temperature the PIT histogram of the shipped model v4 was still humped (the 68% interval held
85%). A second step therefore recalibrates the quantiles (Kuleshov et al. 2018): a monotone map
R of [0, 1] onto itself, the empirical CDF of the tempered PDFs' PIT values on the calibration
spectra, turns each PDF's CDF F into R(F). On the calibration spectra the PIT values become
uniform by construction; a separate test mock says whether that holds. The map moves
probability between bins along each PDF's own CDF, so a PDF's peak and entropy change too.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from mtopnet_core import grid
from mtopnet_core.errors import UsageError
from mtopnet_core.evaluation import pit_values
from mtopnet_core.metrics import pdf_entropy

__all__ = ["PDF_FLOOR", "TemperatureFit", "temper", "pdf_temperatures", "fit_temperature", "fit_pit_map",
           "apply_pit_map", "calibrate_pdfs"]

logger = logging.getLogger(__name__)

PDF_FLOOR = 1e-30
"""Smallest probability used in logarithms: a float32 softmax underflows to exactly 0."""

_LOG_T_RANGE = (np.log(0.05), np.log(5.0))
PIT_MAP_KNOTS = 51
"""Knots of the quantile map (every 0.02 in CDF value): finer than the 10-bin PIT histogram it
is judged by, coarse enough that 6 000 calibration spectra give ~120 per interval."""
PIT_MAP_ROUNDS = 10
"""Rounds of the quantile map (:func:`fit_pit_map`). Model v5's test mock: the central 68% interval
held 72.2% after 3 rounds, 69.0% after 6, 68.0% after 10, 67.6% after 20 (PIT histogram within 17%,
10%, 11%, 15% of flat); the peaks, and so the success fractions, do not move."""
PIT_MAP_SAMPLES = 201
"""Points at which the composed map of all rounds is stored."""
PIT_MAP_IDENTITY_SHARE = 0.01
"""Share of the identity mixed into the map, so that it is strictly increasing and no CDF step
(a bin's probability) becomes exactly zero."""


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and what it did on the calibration spectra.

    Attributes
    ----------
    temperature : float
        Temperature of a PDF whose entropy is ``entropy_ref``.
    n : int
        Spectra used (finite PDF, true redshift inside the binned range).
    nll_before, nll_after : float
        Mean negative log-likelihood of the true redshift's bin, before and after (nats).
    entropy_slope : float
        d ln T / d H: how much wider (positive) a PDF of higher entropy is made.
    entropy_ref : float
        Entropy (nats) at which the temperature is ``temperature``: the calibration set's median.
    """

    temperature: float
    n: int
    nll_before: float
    nll_after: float
    entropy_slope: float = 0.0
    entropy_ref: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready values."""
        return asdict(self)


def _tempered_log(log_pdf: np.ndarray, temperature: float) -> np.ndarray:
    scaled = log_pdf / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    return scaled - np.log(np.exp(scaled).sum(axis=-1, keepdims=True))


def temper(pdf: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """PDFs at a temperature: ``p**(1/T)`` renormalised along the last axis.

    Parameters
    ----------
    pdf : numpy.ndarray, shape (..., 800)
        Probabilities per redshift bin; rows of NaN stay NaN.
    temperature : float or numpy.ndarray of shape (...)
        Positive; one for all PDFs or one per PDF; 1 returns the PDFs unchanged.

    Returns
    -------
    numpy.ndarray, same shape, float32
    """
    temperature = np.asarray(temperature, dtype=np.float64)
    finite = temperature[np.isfinite(temperature)]
    if not np.all(finite > 0):
        raise ValueError(f"temperature must be positive, got {finite[finite <= 0][:1]}")
    pdf = np.asarray(pdf)
    if np.all(temperature == 1.0):
        return pdf.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore"):
        log_pdf = np.log(np.maximum(pdf.astype(np.float64), PDF_FLOOR))
        return np.exp(_tempered_log(log_pdf, temperature[..., None] if temperature.ndim else temperature)
                      ).astype(np.float32)


def _entropy(pdf: np.ndarray) -> np.ndarray:
    """Entropy of each PDF, nats (as :func:`mtopnet_core.metrics.summarise_pdfs`), negative values read as 0."""
    return pdf_entropy(np.maximum(np.asarray(pdf, dtype=np.float64), 0.0))


def pdf_temperatures(pdf: np.ndarray, calibration: dict) -> np.ndarray:
    """The temperature of each PDF under a model's calibration.

    Parameters
    ----------
    pdf : numpy.ndarray, shape (..., 800)
        Untempered PDFs.
    calibration : dict
        A model's ``calibration`` metadata (:class:`TemperatureFit` fields); empty: no calibration.

    Returns
    -------
    numpy.ndarray, shape (...)
        Temperatures within 0.05-5 (NaN where the PDF is NaN).
    """
    temperature = float(calibration.get("temperature", 1.0))
    slope = float(calibration.get("entropy_slope", 0.0))
    if slope == 0.0:
        return np.full(np.shape(pdf)[:-1], temperature)
    log_t = np.log(temperature) + slope * (_entropy(pdf) - float(calibration.get("entropy_ref", 0.0)))
    return np.exp(np.clip(log_t, *_LOG_T_RANGE))


def _usable(pdf: np.ndarray, z_true: np.ndarray) -> np.ndarray:
    """Rows a calibration can use: a finite PDF and a true redshift inside the bins, shape (N,) bool."""
    edges = grid.redshift_bin_edges()
    return np.isfinite(pdf).all(axis=1) & (z_true >= edges[0]) & (z_true < edges[-1])


def fit_temperature(pdf: np.ndarray, z_true: np.ndarray, by_entropy: bool = True) -> TemperatureFit:
    """The temperature (law) that minimises the mean negative log-likelihood of the true redshift's bin.

    Parameters
    ----------
    pdf : numpy.ndarray, shape (N, 800)
        Untempered PDFs (temperature 1).
    z_true : numpy.ndarray, shape (N,)
        True redshifts; rows outside the binned range or with NaN PDFs are left out.
    by_entropy : bool
        Fit the temperature's dependence on each PDF's entropy too (else one temperature).

    Returns
    -------
    TemperatureFit

    Raises
    ------
    ValueError
        If no spectrum can be used.
    """
    pdf, z_true = np.asarray(pdf, dtype=np.float64), np.asarray(z_true, dtype=np.float64)
    usable = _usable(pdf, z_true)
    if not usable.any():
        raise UsageError("no spectrum with a finite PDF and a true redshift inside the redshift bins")
    log_pdf = np.log(np.maximum(pdf[usable], PDF_FLOOR))
    from scipy.optimize import minimize, minimize_scalar  # fitting only: prediction need not import it

    true_bin = grid.redshift_to_bin(z_true[usable])
    rows = np.arange(len(true_bin))
    entropy = _entropy(pdf[usable])
    entropy_ref = float(np.median(entropy)) if by_entropy else 0.0

    def nll(params: np.ndarray) -> float:
        log_t = np.clip(params[0] + params[1] * (entropy - entropy_ref), *_LOG_T_RANGE)
        return float(-_tempered_log(log_pdf, np.exp(log_t)[:, None])[rows, true_bin].mean())

    if by_entropy:
        best = minimize(nll, x0=np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-7})
        log_t_ref, slope = float(best.x[0]), float(best.x[1])
    else:
        best = minimize_scalar(lambda log_t: nll(np.array([log_t, 0.0])), bounds=_LOG_T_RANGE, method="bounded",
                               options={"xatol": 1e-4})
        log_t_ref, slope = float(best.x), 0.0
    return TemperatureFit(float(np.exp(log_t_ref)), int(usable.sum()), nll(np.zeros(2)), float(best.fun),
                          slope, entropy_ref)


def fit_pit_map(pdf: np.ndarray, z_true: np.ndarray, knots: int = PIT_MAP_KNOTS,
                rounds: int = PIT_MAP_ROUNDS) -> dict:
    """The quantile map R, fitted on calibration spectra: the empirical CDF of their PIT values.

    A binned PDF keeps its CDF at the bins' edges only, and a PIT value interpolates it
    linearly inside the true redshift's bin, where R(F) is not linear: one map leaves narrow
    PDFs' PIT values partly humped (one round left the 68% interval of model v4's test mock at
    72%, three rounds that of model v5 at 72%). The map is therefore fitted again on the mapped
    PDFs, ``rounds`` times, and the rounds composed (v5, ten rounds: 68.0%).

    Parameters
    ----------
    pdf : numpy.ndarray, shape (N, 800)
        Calibrated-so-far (tempered) PDFs of calibration spectra.
    z_true : numpy.ndarray, shape (N,)
        Their true redshifts (rows with NaN PDFs or truths, or truths outside the bins, are left out).
    knots : int
        Knots of each round's map.
    rounds : int

    Returns
    -------
    dict
        ``u`` and ``r``: the composed map at :data:`PIT_MAP_SAMPLES` points (R(u) = r, linear in
        between; r[0] = 0, r[-1] = 1, strictly increasing); ``n``: spectra used; ``rounds``.

    Raises
    ------
    ValueError
        If fewer than ``10 * knots`` spectra can be used.
    """
    pdf, z_true = np.asarray(pdf), np.asarray(z_true, dtype=float)
    usable = _usable(pdf, z_true)
    current, z_true = pdf[usable], z_true[usable]
    if len(current) < 10 * knots:
        raise UsageError(f"{len(current)} usable spectra: a quantile map with {knots} knots needs at least "
                         f"{10 * knots}")
    u = np.linspace(0.0, 1.0, knots)
    samples = np.linspace(0.0, 1.0, PIT_MAP_SAMPLES)
    composed = samples.copy()
    for _ in range(rounds):
        pit = np.sort(pit_values(current, z_true))
        r = (1 - PIT_MAP_IDENTITY_SHARE) * np.searchsorted(pit, u, side="right") / pit.size \
            + PIT_MAP_IDENTITY_SHARE * u
        r[0], r[-1] = 0.0, 1.0
        composed = np.interp(composed, u, r)
        current = apply_pit_map(current, {"u": u, "r": r})
    return {"u": samples.tolist(), "r": composed.tolist(), "n": int(len(z_true)), "rounds": rounds}


def apply_pit_map(pdf: np.ndarray, pit_map: dict) -> np.ndarray:
    """PDFs whose CDF F becomes R(F), R the quantile map of :func:`fit_pit_map`.

    Parameters
    ----------
    pdf : numpy.ndarray, shape (..., 800)
    pit_map : dict
        ``u`` and ``r`` knots.

    Returns
    -------
    numpy.ndarray, shape (..., 800), float32
        Probability per bin, summing to 1 (NaN rows stay NaN).
    """
    pdf = np.asarray(pdf, dtype=np.float64)
    cdf = np.cumsum(pdf, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf = np.concatenate([np.zeros_like(cdf[..., :1]), cdf / cdf[..., -1:]], axis=-1)
    mapped = np.interp(np.clip(cdf, 0.0, 1.0), pit_map["u"], pit_map["r"])
    mapped[np.isnan(cdf)] = np.nan  # np.interp would send NaN to the last knot
    return np.diff(mapped, axis=-1).astype(np.float32)


def calibrate_pdfs(pdf: np.ndarray, calibration: dict) -> np.ndarray:
    """Apply a model's calibration to raw PDFs: the temperature law, then the quantile map if it has one.

    Parameters
    ----------
    pdf : numpy.ndarray, shape (..., 800)
        The network's PDFs (temperature 1).
    calibration : dict
        A model's ``calibration`` metadata; empty: the PDFs are returned unchanged.
    """
    tempered = temper(pdf, pdf_temperatures(pdf, calibration))
    return apply_pit_map(tempered, calibration["pit_map"]) if "pit_map" in calibration else tempered
