"""Predictions from a trained M-TOPnet model: redshift PDFs, line locations, M* and SFR.

A trained model is a folder with ``model.keras`` and ``model.json`` (grid, redshift bins,
preprocessing, standardisation, settings, data provenance), as :func:`~mtopnet_core.training.train`
writes it. Loading checks that the model was made for this code's wavelength grid and redshift
bins, and fails with one line naming the file otherwise.
"""

from __future__ import annotations

import os
import threading
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from mtopnet_core import grid, line_comb
from mtopnet_core.calibration import calibrate_pdfs
from mtopnet_core.errors import ModelError, UsageError
from mtopnet_core.jsonio import read_json
from mtopnet_core.mc_dropout import HEAD_INPUT_LAYERS, HEAD_INPUTS, LINE_TASK, McHeads, open_mc_heads
from mtopnet_core.metrics import PdfSummary, summarise_pdfs
from mtopnet_core.preprocessing import PreprocessingConfig, Standardiser, preprocess
from mtopnet_core.runtime import (
    COMB_MAPS_OUTPUT,
    COMB_PRIOR_OUTPUT,
    OUTPUT_NAMES,
    KerasNetwork,
    Network,
    open_onnx_network,
)
from mtopnet_core.spectra import Spectra
from mtopnet_core.tasks import EMBEDDING_LAYERS, SCALAR_TASKS, TASK_NAMES

__all__ = ["ModelError", "TrainedModel", "Predictions", "load_trained_model", "predict", "domain_flags"]

_KERAS_LOCK = threading.RLock()
RUNTIMES = ("auto", "onnx", "keras")
"""``auto``: the exported network when the model folder has one (:mod:`mtopnet_core.runtime`), else Keras."""


@dataclass
class TrainedModel:
    """A loaded model with everything needed to use it on new spectra.

    ``network`` runs the deterministic forward pass (ONNX Runtime or Keras). ``model`` (the
    Keras model) and ``forward`` (the same network with one more output, ``embedding``: the
    concatenated first dense layers of the three physical heads (N, 192), the latent space of
    the paper's Fig. 13) are loaded on first use, so that a process predicting with ONNX Runtime
    never imports TensorFlow; saliency maps, MC dropout and training need them.
    """

    path: Path
    metadata: dict
    standardiser: Standardiser
    preprocessing: PreprocessingConfig
    network: Network | None = None
    threads: int | None = None
    """Compute threads of the exported network and of preprocessing (None: one per core)."""
    _keras: dict = field(default_factory=dict, repr=False, compare=False)
    _heads: McHeads | None = field(default=None, repr=False, compare=False)  # opened with the export

    def __post_init__(self) -> None:
        if self.network is None:
            self.network = KerasNetwork(self.forward)

    @property
    def runtime(self) -> str:
        """What runs the forward pass: ``onnxruntime`` or ``keras``."""
        return self.network.name

    @property
    def model(self):
        """The Keras model (keras.Model), loaded on first use (once, whichever thread asks first)."""
        with _KERAS_LOCK:
            if "model" not in self._keras:
                self._keras["model"] = _load_keras(self.path / "model.keras")
            return self._keras["model"]

    @property
    def forward(self):
        """The Keras model with the ``embedding`` output (keras.Model), built on first use."""
        model = self.model
        with _KERAS_LOCK:
            if "forward" not in self._keras:
                self._keras["forward"] = _with_embedding(model)
            return self._keras["forward"]

    @cached_property
    def mc_heads(self) -> McHeads | None:
        """The heads for MC dropout without TensorFlow, when the model folder has them and its
        network gives the heads' inputs (:mod:`mtopnet_core.mc_dropout`); else None."""
        heads = self._heads if self._heads is not None else open_mc_heads(self.path, self.metadata)
        return heads if heads is not None and set(heads.inputs) <= set(self.network.outputs) else None

    @property
    def embedding_size(self) -> int:
        """Length of the embedding, read from the network (64 units per physical head today)."""
        return self.network.embedding_size

    @property
    def domain(self) -> dict:
        """Coverage and label ranges of the training set (:data:`DEFAULT_DOMAIN` if the model predates them)."""
        return self.metadata.get("domain", DEFAULT_DOMAIN)

    @property
    def temperature(self) -> float:
        """Temperature of a PDF of typical entropy (1 for a model that was never calibrated)."""
        return float(self.metadata.get("calibration", {}).get("temperature", 1.0))

    def calibrate(self, pdf: np.ndarray) -> np.ndarray:
        """Redshift PDFs, shape (..., 800), under this model's calibration (temperature law, quantile map)."""
        return calibrate_pdfs(pdf, self.metadata.get("calibration", {}))

    @property
    def version(self) -> str:
        """A short label: the model folder's name and its training provenance."""
        data = self.metadata.get("data", {})
        return (f"{self.path.name} (code {self.metadata.get('code_version')}, "
                f"{data.get('n_train', '?')} training spectra, seed {self.metadata.get('training', {}).get('seed')})")


def _with_embedding(model):
    import keras

    outputs = {name: model.get_layer(name).output for name in TASK_NAMES}
    outputs["embedding"] = keras.layers.Concatenate(name="embedding")(
        [model.get_layer(name).output for name in EMBEDDING_LAYERS])
    # what the heads read: MC dropout runs the trunk once and the heads in NumPy (mc_dropout)
    present = {layer.name for layer in model.layers}
    for kind, layer in HEAD_INPUT_LAYERS.items():
        if layer in present:
            outputs[HEAD_INPUTS[kind]] = model.get_layer(layer).output
    if COMB_PRIOR_OUTPUT in present:  # the comb's evidence and projection run in NumPy after an export (runtime)
        outputs[COMB_PRIOR_OUTPUT] = model.get_layer(COMB_PRIOR_OUTPUT).output
        # maps first: the layout ONNX Runtime computes them in (no transpose in the export)
        maps = model.get_layer(line_comb.EVIDENCE_MAPS_LAYER).output
        outputs[COMB_MAPS_OUTPUT] = keras.layers.Permute((2, 1), name=COMB_MAPS_OUTPUT)(maps)
    return keras.Model(model.inputs, outputs, name="mtopnet_with_embedding")


@dataclass
class Predictions:
    """Outputs for N spectra; rows of rejected spectra are NaN.

    Attributes
    ----------
    names : list of str
    redshift_pdf : numpy.ndarray, shape (N, 800), float32
        Probability per redshift bin, at the model's calibration temperature (MC-dropout mean
        of the tempered passes when ``mc_passes`` > 0).
    redshift_pdf_spread : numpy.ndarray or None, shape (N, 800), float32
        Standard deviation over the MC-dropout passes.
    summary : PdfSummary
        Peak and second solution, entropy, skewness, RMS, width, probability near the peak.
    line_probability : numpy.ndarray, shape (N, 12217), float32
        Probability that each channel holds a Table 1 line.
    quantities : dict of str to numpy.ndarray, shape (N,)
        Each scalar task's prediction (:data:`~mtopnet_core.tasks.SCALAR_TASKS`): ``log_mstar``,
        log10 M* (Msun), and ``log_sfr``, log10 SFR (Msun/yr); MC-dropout means when enabled.
    quantity_spreads : dict of str to numpy.ndarray, or None
        Their standard deviations over the MC-dropout passes.
    embedding : numpy.ndarray, shape (N, embedding size), float32
        Latent vectors (first dense layers of the redshift, M* and SFR heads).
    problems : list of (str or None)
        Why a spectrum was not processed.
    coverage : numpy.ndarray, shape (N,)
        Fraction of the grid's channels with usable data.
    flags : list of str
        Why a processed spectrum's outputs are not to be trusted ("" when none): coverage below
        the training spectra's, a redshift at the edge of the bins, or M* or SFR outside the
        training labels' range (:func:`domain_flags`).
    """

    names: list[str]
    redshift_pdf: np.ndarray
    redshift_pdf_spread: np.ndarray | None
    summary: PdfSummary
    line_probability: np.ndarray
    quantities: dict[str, np.ndarray]
    quantity_spreads: dict[str, np.ndarray] | None
    embedding: np.ndarray
    problems: list[str | None]
    coverage: np.ndarray
    flags: list[str]


def _load_keras(model_file: Path):
    import keras

    import mtopnet_core.model  # noqa: F401  (registers the comb head's layers)

    try:
        return keras.saving.load_model(model_file)
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, EOFError) as exc:
        raise ModelError(f"{model_file}: cannot load the model, the file is damaged "
                         f"({type(exc).__name__}: {str(exc)[:200]})") from None


def load_trained_model(path: str | os.PathLike, runtime: str = "auto", threads: int | None = None) -> TrainedModel:
    """Load a trained model folder (or its ``model.keras``) and check its metadata.

    Parameters
    ----------
    path : str or path-like
    runtime : {"auto", "onnx", "keras"}
        What runs the forward pass (:data:`RUNTIMES`).
    threads : int, optional
        Compute threads of the ONNX Runtime session and of preprocessing (default: one per core).

    Raises
    ------
    ModelError
        If a file is missing or unreadable, the model's grid or redshift bins differ from
        this code's, or its exported network is not the export of its ``model.keras``.
    """
    if runtime not in RUNTIMES:
        raise UsageError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    path = Path(path)
    folder = path.parent if path.suffix == ".keras" else path
    model_file, meta_file = folder / "model.keras", folder / "model.json"
    for required in (model_file, meta_file):
        if not required.is_file():
            raise ModelError(f"{required}: missing (a trained model folder holds model.keras and model.json)")
    meta = read_json(meta_file, ModelError, "model metadata")
    if meta.get("format") != "mtopnet-model":
        raise ModelError(f"{meta_file}: not M-TOPnet model metadata")
    if meta.get("grid_fingerprint") != grid.grid_fingerprint():
        raise ModelError(f"{meta_file}: model was trained on another wavelength grid")
    bins = {"z_min": grid.Z_MIN, "width": grid.Z_BIN_WIDTH, "n": grid.N_Z_BINS}
    if meta.get("redshift_bins") != bins:
        raise ModelError(f"{meta_file}: model uses redshift bins {meta.get('redshift_bins')}, this code {bins}")
    if not zipfile.is_zipfile(model_file):
        raise ModelError(f"{model_file}: not a Keras model file (damaged or truncated); copy or ship the model again")
    heads = open_mc_heads(folder, meta) if runtime != "keras" else None  # read once, for the export and MC dropout
    network = open_onnx_network(folder, meta, threads, heads) if runtime != "keras" else None
    if runtime == "onnx" and network is None:
        raise ModelError(f"{folder}: no exported network (model.onnx); export the model first")
    # with the exported network, model.keras is checked by its checksum and loaded only if needed
    return TrainedModel(folder, meta, Standardiser.from_dict(meta["standardiser"]),
                        PreprocessingConfig(**meta["preprocessing"]), network, threads, _heads=heads)


def _mc_passes(trained: TrainedModel, x: dict, passes: int, batch_size: int,
               seed: int) -> tuple[list[dict], np.ndarray]:
    """Forward passes with dropout on and the batch normalisation in inference mode: the trunk once
    and the heads ``passes`` times in NumPy where the model folder allows, else the whole Keras
    network ``passes`` times (unseeded: TensorFlow draws the masks). Returns the passes without
    the line-location output, and its mean over the passes (the only summary of it kept)."""
    heads = trained.mc_heads
    if heads is not None:
        once = trained.network(x, outputs=[*OUTPUT_NAMES, *heads.inputs])
        runs = heads.passes(once, passes, seed)
        lines = heads.line_mean([one_pass.pop(LINE_TASK) for one_pass in runs])
        return [{**one_pass, "embedding": once["embedding"]} for one_pass in runs], lines
    import keras

    bn_layers = [layer for layer in trained.model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bn_layers:
        layer.trainable = False  # Keras 3: a frozen BatchNormalization runs in inference mode
    try:
        if "mc" not in trained._keras:
            trained._keras["mc"] = KerasNetwork(trained.forward, batch_size, training=True)
        runs = [trained._keras["mc"](x) for _ in range(passes)]
        return runs, np.mean([one_pass.pop(LINE_TASK) for one_pass in runs], axis=0)
    finally:
        for layer in bn_layers:
            layer.trainable = True


def predict(trained: TrainedModel, spectra: Spectra, mc_passes: int = 0, batch_size: int = 256,
            mc_seed: int = 0) -> Predictions:
    """Run the model on spectra on the MOONS grid.

    Parameters
    ----------
    trained : TrainedModel
    spectra : Spectra
        N spectra with their errors, quality bits, sky model and object IDs.
    mc_passes : int
        0 for one deterministic pass; N > 1 for Monte Carlo dropout with N passes (the batch
        normalisation stays in inference mode).
    batch_size : int
    mc_seed : int
        Seed of the dropout masks (the same predictions for the same seed, where the model folder
        has its heads for NumPy; :mod:`mtopnet_core.mc_dropout`).

    Returns
    -------
    Predictions
    """
    if mc_passes == 1 or mc_passes < 0:
        raise UsageError(f"mc_passes must be 0 (off) or at least 2, got {mc_passes}")
    pre = preprocess(spectra, trained.preprocessing, threads=trained.threads or os.cpu_count() or 1)
    keep = pre.usable
    n = len(spectra)
    pdf = np.full((n, grid.N_Z_BINS), np.nan, np.float32)
    lines = np.full((n, grid.N_CHANNELS), np.nan, np.float32)
    quantities = {t.name: np.full(n, np.nan) for t in SCALAR_TASKS}
    embedding = np.full((n, trained.embedding_size), np.nan, np.float32)
    pdf_spread = spreads = None
    if keep.any():
        x = {"spectrum": pre.lines[keep][..., None],
             "continuum": trained.standardiser.continuum(pre.continuum[keep])}
        if mc_passes:
            passes, lines_mean = _mc_passes(trained, x, mc_passes, batch_size, mc_seed)
            stack = {k: np.stack([p[k] for p in passes]) for k in passes[0]}
            stack["redshift"] = trained.calibrate(stack["redshift"])
            out = {k: v.mean(axis=0) for k, v in stack.items()}
            out[LINE_TASK] = lines_mean
            pdf_spread = np.full((n, grid.N_Z_BINS), np.nan, np.float32)
            pdf_spread[keep] = stack["redshift"].std(axis=0)
            spreads = {t.name: np.full(n, np.nan) for t in SCALAR_TASKS}
            for t in SCALAR_TASKS:
                physical = trained.standardiser.physical(t.name, stack[t.name][..., 0])
                quantities[t.name][keep], spreads[t.name][keep] = physical.mean(axis=0), physical.std(axis=0)
        else:
            out = trained.network(x)
            out["redshift"] = trained.calibrate(out["redshift"])
            for t in SCALAR_TASKS:
                quantities[t.name][keep] = trained.standardiser.physical(t.name, out[t.name][:, 0])
        pdf[keep], lines[keep] = out["redshift"], out[LINE_TASK]
        embedding[keep] = out["embedding"]
    summary_rows = summarise_pdfs(np.where(keep[:, None], pdf, 1.0))  # placeholder rows for rejected ones
    summary = PdfSummary(**{field: np.where(keep, value, np.nan)
                            for field, value in vars(summary_rows).items()})
    flags = domain_flags(trained.domain, pre.coverage, summary.z_peak, quantities, pre.continuum)
    return Predictions(list(spectra.names), pdf, pdf_spread, summary, lines, quantities, spreads,
                       embedding, pre.problems, pre.coverage, flags)


EDGE_BINS = 5
"""A redshift peak this close (bins) to either end of the bins is flagged: the truth may lie outside."""
COVERAGE_TOLERANCE = 0.05
"""Coverage below the training spectra's least by more than this is flagged."""
RANGE_TOLERANCE = 0.1
"""log M* or log SFR beyond the training labels' range by more than this (dex) is flagged."""
CONTINUUM_TOLERANCE = 0.2
"""A continuum brighter than the training spectra's brightest by more than this fraction is flagged."""
DEFAULT_DOMAIN = {"coverage_min": 0.84, "log_mstar": [8.0, 11.5], "log_sfr": [-1.7, 3.4],
                  "source": "models without a recorded domain: the default mock population's ranges"}
"""Domain of a model trained before domains were recorded (:func:`mtopnet_core.training.training_domain`)."""


def domain_flags(domain: dict, coverage: np.ndarray, z_peak: np.ndarray,
                 quantities: dict[str, np.ndarray], continuum: np.ndarray | None = None) -> list[str]:
    """Why each prediction lies outside what the model was trained on ("" when it does not).

    Parameters
    ----------
    domain : dict
        ``coverage_min`` (fraction), per scalar task its name with [low, high] of the training
        labels (``log_mstar``, ``log_sfr``, dex) and, for models trained since it was recorded,
        ``continuum_max``: the brightest training continuum per point (length 10,
        :func:`mtopnet_core.training.continuum_ceiling`).
    coverage : numpy.ndarray, shape (N,)
    z_peak : numpy.ndarray, shape (N,)
        NaN for spectra that were not processed (never flagged: their ``problem`` says why).
    quantities : dict of str to numpy.ndarray, shape (N,)
        The scalar tasks' predictions (:attr:`Predictions.quantities`).
    continuum : numpy.ndarray, shape (N, 10), optional
        The spectra's continuum vectors before standardisation, 1e-17 erg/s/cm^2/A.

    Returns
    -------
    list of str
        "; "-joined reasons per spectrum.
    """
    z_low = grid.Z_MIN + EDGE_BINS * grid.Z_BIN_WIDTH
    z_top = grid.Z_MIN + grid.N_Z_BINS * grid.Z_BIN_WIDTH
    z_high = z_top - EDGE_BINS * grid.Z_BIN_WIDTH
    brightness = np.full(len(coverage), np.nan)
    if continuum is not None and "continuum_max" in domain:
        with np.errstate(divide="ignore", invalid="ignore"):
            brightness = np.max(continuum / np.asarray(domain["continuum_max"]), axis=1)
    flags = []
    for i, (cov, z) in enumerate(zip(coverage, z_peak, strict=True)):
        reasons = []
        if not np.isfinite(z):
            flags.append("")
            continue
        if cov < domain["coverage_min"] - COVERAGE_TOLERANCE:
            reasons.append(f"coverage {100 * cov:.0f}% of the grid (trained on >= {100 * domain['coverage_min']:.0f}%)")
        if brightness[i] > 1 + CONTINUUM_TOLERANCE:
            reasons.append(f"continuum {brightness[i]:.1f}x the brightest training spectrum's")
        if not z_low <= z <= z_high:
            reasons.append(f"z at the edge of the model's range ({grid.Z_MIN:.1f}-{z_top:.1f})")
        for task in SCALAR_TASKS:
            low, high = domain[task.name]
            value = quantities[task.name][i]
            if not low - RANGE_TOLERANCE <= value <= high + RANGE_TOLERANCE:
                reasons.append(f"{task.title} {value:.2f} outside the training range {low:.1f}-{high:.1f}")
        flags.append("; ".join(reasons))
    return flags
