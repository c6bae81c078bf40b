"""The inspector's figures: one object's spectrum, saliency map, redshift PDF and line insets.

Plain Bokeh figures, built once per session and updated in place: showing another object
changes their data sources and ranges, never the figures. Replacing figures (what a HoloViews
DynamicMap does on every change) made each click re-walk the page's whole model graph on the
server and rebuild the views in the browser: seconds per object instead of a fraction of one.
For the same reason the figures' titles never change: a new title makes the browser lay out
the whole page again (~0.1 s per object), so what names the object is an HTML caption above
the spectrum, and each inset says where its line falls in a label drawn inside it. Every range
is set here rather than left to the browser, and the figures' left borders are wide enough for
their tick labels: an automatic range, or a frame whose width follows its tick labels, is sent
back to the server after every object (16 messages per object, ~0.2 s of the server's time).

:func:`spectrum_layers` computes what is drawn (no Bokeh, tested on its own); the science in
it (the model's channel mask, the line list, the smoothing) is the core's.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import panel as pn
from bokeh.models import BoxAnnotation, ColumnDataSource, HoverTool, Label, LabelSet, Range1d, Span
from bokeh.plotting import figure

from mtopnet_core import grid
from mtopnet_core.conventions import FLUX_UNIT_STRING
from mtopnet_core.lines import lines_in_range
from mtopnet_core.preprocessing import channel_mask

from .data import InspectedObject

__all__ = ["STRONG_LINES", "COLOURS", "MASKED_STYLES", "DEFAULT_SMOOTHING", "SpectrumLayers", "spectrum_layers",
           "smooth", "stagger", "InspectorFigures"]

STRONG_LINES = ("[O II]", "H β", "[O III]", "H α")
INSET_HALF_WIDTH_REST = 15.0
"""Half-width of a zoom inset in rest-frame Å."""
WIDE_BORDER, NARROW_BORDER = 80, 75
"""Left borders (pixels) of the spectrum and saliency figures and of the small ones: room for the
longest tick labels (e.g. 0.0025 on a PDF), so that the frames keep their width from one object
to the next."""
COLOURS = {"flux": "#333333", "masked_flux": "#c8c8c8", "error": "salmon", "sky": "lightblue", "masked": "#b0b0b0",
           "prediction": "#1f77b4", "predicted": "#9467bd", "display": "#2ca02c", "truth": "#d62728",
           "saliency": "#8c564b", "current": "black", "good": "#1f77b4", "failed": "#d62728", "no truth": "grey"}
"""One colour language for every view: the truth is red, the model's redshift PDF blue, the
solution whose lines are shown green, the line-location head's predicted lines purple."""
MASKED_STYLES = ("gaps", "dimmed")
"""How the spectrum draws the channels the model ignores: left out, or in light grey."""
DEFAULT_SMOOTHING = 3
"""Smoothing width in channels: about one resolution element (2.7 channels per FWHM)."""
LABEL_GAP = 0.012
"""Least distance between two line labels on one level, as a fraction of the whole wavelength
range (about the height of an 8 pt label on the spectrum at full width)."""
SIGNIFICANT_SNR = 5.0
"""A feature whose channels (two or more side by side) reach this S/N stays inside the y-range."""


def smooth(values: np.ndarray, width: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted running mean over ``width`` channels, within each stretch of the grid.

    Parameters
    ----------
    values : numpy.ndarray, shape (12217,)
        NaN values are left out.
    width : int
        Channels in the window; 1 returns the input (NaN where its weight is zero).
    weights : numpy.ndarray, shape (12217,), optional
        Weight of each channel (inverse variances); zero or NaN leaves a channel out. Equal
        weights by default.

    Returns
    -------
    numpy.ndarray, shape (12217,)
        NaN where the window holds no usable channel. The YJ-H band gap is never averaged over.
    """
    weights = np.ones(values.shape) if weights is None else np.asarray(weights, float)
    usable = np.isfinite(values) & np.isfinite(weights) & (weights > 0)
    if width <= 1:
        return np.where(usable, values, np.nan)
    weights = np.where(usable, weights, 0.0)
    kernel = np.ones(width)
    out = np.full(values.shape, np.nan)
    for part in grid.contiguous_segments():
        total = np.convolve(np.where(usable[part], values[part] * weights[part], 0.0), kernel, mode="same")
        weight = np.convolve(weights[part], kernel, mode="same")
        with np.errstate(invalid="ignore", divide="ignore"):
            out[part] = np.where(weight > 0, total / weight, np.nan)
    return out


def stagger(x: np.ndarray, min_gap: float, levels: int = 3) -> np.ndarray:
    """Level (0 to ``levels`` - 1) of each label at ``x`` so that labels on one level are at
    least ``min_gap`` apart (where that cannot be, the level whose last label is farthest).

    Returns
    -------
    numpy.ndarray of int, shape like ``x``
    """
    x = np.asarray(x, float)
    level, last = np.zeros(x.size, int), np.full(levels, -np.inf)
    for i in np.argsort(x, kind="stable"):
        free = np.flatnonzero(x[i] - last >= min_gap)
        level[i] = free[0] if free.size else int(np.argmin(last))
        last[level[i]] = x[i]
    return level


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True values."""
    padded = np.concatenate([[False], np.asarray(flags, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2], edges[1::2], strict=True))


@dataclass
class SpectrumLayers:
    """What the spectrum panel draws for one object; arrays of shape (12217,) unless said.

    Attributes
    ----------
    flux : numpy.ndarray
        Inverse-variance smoothed flux of the channels the model uses (NaN elsewhere and
        across the YJ-H gap).
    masked_flux : numpy.ndarray
        The smoothed flux of the channels the model ignores, to be drawn dimmed (all NaN when
        masked channels are shown as gaps).
    error, sky : numpy.ndarray
        The error (NaN where masked) and the sky scaled into the lower part of the y-range.
    masked_runs : numpy.ndarray, shape (k, 2)
        First and last wavelength (Å) of each run of masked channels.
    predicted_lines, predicted_probability : numpy.ndarray, shape (m,)
        Centre (Å) and highest line-location probability of each run of channels where the
        line-location head's probability exceeds 0.5.
    ylim : (float, float)
        Robust limits that keep every significant feature.
    """

    flux: np.ndarray
    masked_flux: np.ndarray
    error: np.ndarray
    sky: np.ndarray
    masked_runs: np.ndarray
    predicted_lines: np.ndarray
    predicted_probability: np.ndarray
    ylim: tuple[float, float]


def _significant(flux: np.ndarray, error: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Channels in a run of two or more usable channels at S/N >= :data:`SIGNIFICANT_SNR` (a
    one-channel spike, a cosmic ray or a sky residual, is not a feature)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        strong = usable & (np.abs(flux) >= SIGNIFICANT_SNR * error)
    neighbour = np.zeros_like(strong)
    neighbour[1:] |= strong[:-1]
    neighbour[:-1] |= strong[1:]
    return strong & neighbour


def spectrum_layers(inspected: InspectedObject, wavelength: np.ndarray, sky_threshold: float,
                    smoothing: int = DEFAULT_SMOOTHING, masked_style: str = "gaps") -> SpectrumLayers:
    """Compute the spectrum panel's layers.

    Parameters
    ----------
    inspected : InspectedObject
    wavelength : numpy.ndarray, shape (12217,)
        Observed wavelengths (Å).
    sky_threshold : float
        The model's sky-masking threshold (its preprocessing settings).
    smoothing : int
        Width in channels of the inverse-variance weighted mean drawn as the flux.
    masked_style : {"gaps", "dimmed"}
        Leave the masked channels out, or give them as ``masked_flux`` to draw in light grey.

    Returns
    -------
    SpectrumLayers
        The y-limits span the 0.5-99.5 percentiles of the usable flux, widened to every
        significant feature (:func:`_significant`) and padded: sky residuals and bad channels
        do not squash the spectrum, and no emission line is cut off.
    """
    if masked_style not in MASKED_STYLES:
        raise ValueError(f"masked channels: {masked_style!r} is not one of {', '.join(MASKED_STYLES)}")
    spectrum = inspected.spectrum
    masked = channel_mask(spectrum.flux, spectrum.sky, spectrum.error, spectrum.mask, sky_threshold)[0]
    raw, error = spectrum.flux[0].astype(float), spectrum.error[0].astype(float)
    finite = np.isfinite(raw)
    with np.errstate(divide="ignore"):
        inverse_variance = np.where(finite & np.isfinite(error) & (error > 0), 1.0 / error**2, 0.0)
    flux = smooth(raw, smoothing, np.where(masked, 0.0, inverse_variance))
    flux[masked] = np.nan
    masked_flux = np.full(raw.shape, np.nan)
    if masked_style == "dimmed":
        masked_flux[masked] = smooth(np.where(masked, raw, np.nan), smoothing)[masked]
    good = flux[np.isfinite(flux)]
    lo, hi = np.percentile(good, [0.5, 99.5]) if good.size else (-1.0, 1.0)
    drawn_features = flux[_significant(raw, error, finite & ~masked) & np.isfinite(flux)]
    if drawn_features.size:
        hi = max(hi, float(drawn_features.max()))
    pad = 0.15 * (hi - lo or 1.0)
    lo, hi = float(lo - pad), float(hi + 2 * pad)
    before_gaps = band_gap_starts()
    flux[before_gaps] = masked_flux[before_gaps] = np.nan
    error = np.where(masked, np.nan, error)
    error[before_gaps] = np.nan
    sky = spectrum.sky / np.nanmax(spectrum.sky) * (hi - lo) * 0.3 + lo
    masked_runs = np.array([(wavelength[a], wavelength[b - 1]) for a, b in runs(masked)]).reshape(-1, 2)
    probability = np.nan_to_num(np.asarray(inspected.line_probability, float))
    line_runs = runs(probability > 0.5)
    predicted = np.array([wavelength[(a + b - 1) // 2] for a, b in line_runs])
    predicted_probability = np.array([probability[a:b].max() for a, b in line_runs])
    return SpectrumLayers(flux, masked_flux, error, sky, masked_runs, predicted, predicted_probability, (lo, hi))


def band_gap_starts() -> np.ndarray:
    """Channels followed by a band gap, where a drawn line must break."""
    return np.array([segment.stop - 1 for segment in grid.contiguous_segments()[:-1]])


def _top(values: np.ndarray) -> float:
    """Upper end of a y-range from 0 that shows every finite value (1 when there is none)."""
    finite = np.asarray(values, float)[np.isfinite(values)]
    return float(1.05 * finite.max()) if finite.size and finite.max() > 0 else 1.0


def _escape(text: str) -> str:
    """Text for an HTML caption: object names come from uploaded files."""
    return html.escape(str(text), quote=False)


def _lines_at(z: float | None, wavelength: np.ndarray) -> tuple[np.ndarray, list[str]]:
    if z is None or not np.isfinite(z):
        return np.array([]), []
    found = lines_in_range(float(z), wavelength[0], wavelength[-1])
    return np.array([observed for _, observed in found]), [line.name for line, _ in found]


def pdf_window(pdf: np.ndarray, z_centres: np.ndarray, display_z: float | None = None,
               min_width: float = 0.06) -> tuple[float, float]:
    """The redshift range to zoom a PDF to: its central 99.8% of probability (and the shown
    solution), widened by a fifth on each side and to at least ``min_width``.

    Parameters
    ----------
    pdf : numpy.ndarray, shape (800,)
        Probability per redshift bin (NaN: not processed, the whole range is returned).
    z_centres : numpy.ndarray, shape (800,)
    display_z : float, optional

    Returns
    -------
    (float, float)
    """
    full = (float(z_centres[0]), float(z_centres[-1]))
    if not np.isfinite(pdf).all() or np.sum(pdf) <= 0:
        return full
    cdf = np.cumsum(pdf) / np.sum(pdf)
    low, high = float(np.interp(0.001, cdf, z_centres)), float(np.interp(0.999, cdf, z_centres))
    if display_z is not None:
        low, high = min(low, display_z), max(high, display_z)
    pad = max(0.2 * (high - low), 0.5 * (min_width - (high - low)), 0.0)
    return max(full[0], low - pad), min(full[1], high + pad)


class InspectorFigures:
    """The inspector's Bokeh figures for one session, updated in place by :meth:`show`.

    Attributes
    ----------
    spectrum, saliency, pdf : bokeh.plotting.figure
        The spectrum and the saliency map share their wavelength range, so zooming one
        zooms the other in the browser.
    insets : dict of str to bokeh.plotting.figure
        One zoom per line of :data:`STRONG_LINES`.
    spectrum_caption, saliency_caption : panel.pane.HTML
        What the spectrum and the saliency map show (object, redshifts), drawn above them.
    """

    def __init__(self, wavelength: np.ndarray, width: int = 1450) -> None:
        self.wavelength = np.asarray(wavelength, float)
        self.z_centres = grid.redshift_bin_centres()
        w0, w1 = float(self.wavelength[0]), float(self.wavelength[-1])
        self.x_range = Range1d(w0, w1, bounds=(w0, w1))
        tools = "xwheel_zoom,xpan,box_zoom,reset,save"
        self.spectrum = figure(width=width, height=330, x_range=self.x_range, y_range=Range1d(-1, 1), tools=tools,
                               active_scroll="xwheel_zoom", x_axis_label="observed wavelength (Å)",
                               y_axis_label=f"flux [{FLUX_UNIT_STRING}]", min_border_left=WIDE_BORDER)
        self.spectrum_caption = pn.pane.HTML("", css_classes=["mtopnet-spectrum-caption"], height=24,
                                             sizing_mode="stretch_width")
        self.saliency_caption = pn.pane.HTML("", css_classes=["mtopnet-saliency-caption"], height=24,
                                             sizing_mode="stretch_width")
        self._saliency_of: tuple[str, float | None] | None = None  # (object, solution) the saliency map shows
        # the wavelengths travel to the browser once; showing an object sends only the values
        nothing = np.full(self.wavelength.size, np.nan, np.float32)
        self._spectrum = ColumnDataSource({"x": self.wavelength, "flux": nothing, "masked_flux": nothing,
                                           "error": nothing, "sky": nothing})
        self._masked = ColumnDataSource({"left": [], "right": [], "bottom": [], "top": []})
        self._segments = {name: ColumnDataSource({"x0": [], "y0": [], "x1": [], "y1": [], "name": [], "label_y": [],
                                                  "p": [], "alpha": []})
                          for name in ("predicted", "display", "truth")}
        # masked channels: a strip along the bottom, not bands over the data
        self.spectrum.quad(source=self._masked, color=COLOURS["masked"], alpha=0.8,
                           legend_label="masked channels (sky, flags)")
        self._renderers = {"masked_flux": self.spectrum.line("x", "masked_flux", source=self._spectrum,
                                                             color=COLOURS["masked_flux"], line_width=1)}
        for name, label in (("error", "error"), ("sky", "sky (scaled)"), ("flux", "flux")):
            self._renderers[name] = self.spectrum.line("x", name, source=self._spectrum, color=COLOURS[name],
                                                       line_width=1, legend_label=label)
        for name, label, dash in (("predicted", "predicted line locations (p > 0.5)", "dashed"),
                                  ("display", "lines at the shown solution", "dotted"),
                                  ("truth", "lines at the true z", "dotted")):
            self._renderers[name] = self.spectrum.segment(
                "x0", "y0", "x1", "y1", source=self._segments[name], color=COLOURS[name], line_dash=dash,
                line_width=2 if name == "predicted" else 1, line_alpha="alpha", legend_label=label)
            if name != "predicted":
                self.spectrum.add_layout(LabelSet(x="x0", y="label_y", text="name", source=self._segments[name],
                                                  angle=90, angle_units="deg", text_font_size="8pt",
                                                  text_align="right", text_baseline="bottom",
                                                  text_color=COLOURS[name]))
        self.spectrum.add_tools(HoverTool(renderers=[self._renderers["predicted"]], line_policy="interp",
                                          tooltips=[("predicted line", "@x0{0} Å"), ("probability", "@p{0.00}")]))
        # the legend above the frame, off the data (and the frames of spectrum and saliency stay aligned)
        legend = self.spectrum.legend[0]
        legend.orientation, legend.click_policy = "horizontal", "hide"
        legend.label_text_font_size, legend.padding, legend.spacing = "9pt", 2, 12
        self.spectrum.add_layout(legend, "above")

        self._saliency = ColumnDataSource({"x": self.wavelength, "y": nothing})
        self._before_gaps = band_gap_starts()
        self.saliency = figure(width=width, height=150, x_range=self.x_range, y_range=Range1d(0, 1), tools=tools,
                               active_scroll="xwheel_zoom", y_axis_label="|dp/dx|", min_border_left=WIDE_BORDER)
        self.saliency.line("x", "y", source=self._saliency, color=COLOURS["saliency"])

        self._pdf = ColumnDataSource({"z": self.z_centres, "p": np.zeros_like(self.z_centres)})
        # zoomed on where the PDF's probability lies; the overview below keeps the whole range
        self.pdf = figure(width=620, height=200, x_axis_label="z", y_axis_label="probability",
                          title="redshift PDF (blue), truth (red), shown solution (green)",
                          x_range=Range1d(float(self.z_centres[0]), float(self.z_centres[-1])), y_range=Range1d(0, 1),
                          tools="xwheel_zoom,box_zoom,reset", min_border_left=NARROW_BORDER)
        self.pdf_overview = figure(width=620, height=90, tools="", toolbar_location=None, y_axis_label="whole range",
                                   x_range=(float(self.z_centres[0]), float(self.z_centres[-1])),
                                   y_range=Range1d(0, 1), min_border_left=NARROW_BORDER)
        self.pdf_overview.yaxis.major_label_text_font_size = "0pt"
        self._pdf_window = BoxAnnotation(fill_alpha=0.15, fill_color="grey")
        self._pdf_marks = []  # (truth, shown solution) per figure, a Bokeh annotation belongs to one
        for plot in (self.pdf, self.pdf_overview):
            plot.line("z", "p", source=self._pdf, color=COLOURS["prediction"])
            marks = (Span(dimension="height", line_color=COLOURS["truth"], line_width=2, visible=False),
                     Span(dimension="height", line_color=COLOURS["display"], line_dash="dashed", visible=False))
            for mark in marks:
                plot.add_layout(mark)
            self._pdf_marks.append(marks)
        self._pdf_truth, self._pdf_display = self._pdf_marks[0]
        self.pdf.add_tools(HoverTool(renderers=[self.pdf.renderers[0]],
                                     tooltips=[("z", "@z{0.0000}"), ("p", "@p{0.0000}")]))
        self.pdf_overview.add_layout(self._pdf_window)

        self.insets, self._inset_sources, self._inset_spans, self.inset_labels = {}, {}, {}, {}
        for name in STRONG_LINES:
            source = ColumnDataSource({"x": [], "y": []})
            inset = figure(width=260, height=170, tools="", toolbar_location=None, title=name,
                           x_range=Range1d(0, 1), y_range=Range1d(0, 1), min_border_left=NARROW_BORDER)
            inset.line("x", "y", source=source, color=COLOURS["flux"])
            span = Span(dimension="height", line_color=COLOURS["display"], line_dash="dotted")
            inset.add_layout(span)
            # where the line falls, written in the frame's top-left corner (placed with the ranges)
            label = Label(x=0, y=0, text="", text_font_size="9pt", text_baseline="top", x_offset=3, y_offset=-3,
                          background_fill_color="white", background_fill_alpha=0.7)
            inset.add_layout(label)
            self.insets[name], self._inset_sources[name], self._inset_spans[name] = inset, source, span
            self.inset_labels[name] = label

    def set_visible(self, error: bool, sky: bool) -> None:
        """Show or hide the error and scaled-sky curves (browser-side, nothing recomputed)."""
        self._renderers["error"].visible, self._renderers["sky"].visible = error, sky

    def clear(self, message: str) -> None:
        """Empty every panel and say why in the spectrum's caption."""
        nothing = np.full(self.wavelength.size, np.nan, np.float32)
        self._spectrum.data.update(flux=nothing, masked_flux=nothing, error=nothing, sky=nothing)
        self._saliency.data.update(y=nothing)
        for source in self._inset_sources.values():
            source.data = {"x": [], "y": []}
        self._masked.data = {"left": [], "right": [], "bottom": [], "top": []}
        for name in self._segments:
            self._set_segments(name, np.array([]), [], 0.0, 1.0)
        self._pdf.data.update(p=np.zeros_like(self.z_centres))
        self.spectrum_caption.object, self.saliency_caption.object = _escape(message), ""
        self._saliency_of = None

    def show(self, object_id: str, spectrum: InspectedObject, layers: SpectrumLayers,
             z_peak: float, z_true: float | None, display_z: float | None, new_object: bool) -> None:
        """Draw one object; its saliency map follows with :meth:`show_saliency` (it may need TensorFlow
        loaded first, ~10 s once per server, and the spectrum need not wait for it).

        Parameters
        ----------
        object_id : str
        spectrum : InspectedObject
        layers : SpectrumLayers
        z_peak : float
            The PDF's peak (NaN for an unprocessed spectrum).
        z_true : float or None
        display_z : float or None
            Solution whose lines are drawn (None: the peak).
        new_object : bool
            Reset the zoom to the whole spectrum (a new object, not a new solution or smoothing).
        """
        w = self.wavelength
        lo, hi = layers.ylim
        self._spectrum.data.update({name: getattr(layers, name).astype(np.float32)
                                    for name in ("flux", "masked_flux", "error", "sky")})
        runs_ = layers.masked_runs
        self._masked.data = {"left": runs_[:, 0], "right": runs_[:, 1], "bottom": np.full(len(runs_), lo),
                             "top": np.full(len(runs_), lo + 0.04 * (hi - lo))}
        self.spectrum.y_range.update(start=lo, end=hi)
        if new_object:
            self.x_range.update(start=float(w[0]), end=float(w[-1]))

        z_lines = display_z if display_z is not None else z_peak
        self._set_segments("predicted", layers.predicted_lines, [""] * len(layers.predicted_lines), lo, hi,
                           probability=layers.predicted_probability)
        x, names = _lines_at(z_lines, w)
        self._set_segments("display", x, names, lo, hi)
        x, names = _lines_at(z_true, w)
        self._set_segments("truth", x, names, lo, lo + 0.12 * (hi - lo), label_step=0.12 * (hi - lo))
        truth = "" if z_true is None or not np.isfinite(z_true) else f", true z = {z_true:.4f} (red)"
        shown = f"lines at z = {z_lines:.4f} (green)" if np.isfinite(z_lines) else "no redshift"
        n_predicted = len(layers.predicted_lines)
        predicted = (f"{n_predicted} predicted line location{'s' * (n_predicted != 1)} (purple dashes)"
                     if n_predicted else "no line location predicted")
        self.spectrum_caption.object = f"<b>{_escape(object_id)}</b>: {shown}{truth}; {predicted}"

        if self._saliency_of != (object_id, display_z):  # another smoothing keeps the map shown
            self._saliency.data.update(y=np.full(w.size, np.nan, np.float32))
            self._saliency_of = None
            self.saliency_caption.object = ("saliency map: computing" if np.isfinite(z_peak)
                                            else "no saliency map: no redshift")
        self._pdf.data.update(p=np.nan_to_num(spectrum.pdf))
        start, end = pdf_window(spectrum.pdf, self.z_centres, display_z)
        self.pdf.x_range.update(start=start, end=end)
        self.pdf.y_range.end = _top(spectrum.pdf[(self.z_centres >= start) & (self.z_centres <= end)])
        self.pdf_overview.y_range.end = _top(spectrum.pdf)
        self._pdf_window.update(left=start, right=end)
        for truth_mark, display_mark in self._pdf_marks:
            truth_mark.update(location=z_true if z_true is not None and np.isfinite(z_true) else 0.0,
                              visible=z_true is not None and bool(np.isfinite(z_true)))
            display_mark.update(location=display_z or 0.0, visible=display_z is not None)
        self._show_insets(z_lines, layers)

    def show_saliency(self, object_id: str, display_z: float | None, saliency: np.ndarray) -> None:
        """Draw the saliency map of the object shown (of its PDF's peak, or of the solution ``display_z``).

        Parameters
        ----------
        object_id : str
        display_z : float or None
        saliency : numpy.ndarray, shape (12217,)
            |dp/dx| per channel.
        """
        saliency = np.asarray(saliency, np.float32).copy()
        saliency[self._before_gaps] = np.nan  # no line across the band gap
        self._saliency.data.update(y=saliency)
        self.saliency.y_range.update(start=0.0, end=_top(saliency))
        self.saliency_caption.object = ("saliency |dp/dx| of the redshift "
                                        + ("peak" if display_z is None else f"solution z = {display_z:.4f}"))
        self._saliency_of = (object_id, display_z)

    def _set_segments(self, name: str, x: np.ndarray, names: list[str], y0: float, y1: float,
                      probability: np.ndarray | None = None, label_step: float | None = None) -> None:
        """Vertical markers from ``y0`` to ``y1``, their labels staggered where they would collide
        (the next level ``label_step`` lower for labels at the top, higher at the bottom)."""
        n = len(x)
        span = float(self.wavelength[-1] - self.wavelength[0])
        level = stagger(np.asarray(x, float), LABEL_GAP * span)
        step = -0.22 * (y1 - y0) if label_step is None else label_step
        p = np.ones(n) if probability is None else np.asarray(probability, float)
        self._segments[name].data = {"x0": x, "y0": np.full(n, y0), "x1": x, "y1": np.full(n, y1), "name": names,
                                     "label_y": y1 + level * step, "p": p, "alpha": 0.35 + 0.65 * p}

    def _show_insets(self, z: float, layers: SpectrumLayers) -> None:
        w = self.wavelength
        x, names = _lines_at(z, w)
        observed = dict(zip(names, x, strict=True))  # a doublet's name keeps its redder member
        for name in STRONG_LINES:
            centre = observed.get(name)
            near = np.abs(w - centre) < INSET_HALF_WIDTH_REST * (1 + z) if centre is not None else w < 0
            if near.sum() < 3:
                self._inset_sources[name].data = {"x": [], "y": []}
                self._inset_spans[name].visible = False
                # an empty frame of its own, not the last object's, with the label in its corner
                self.insets[name].x_range.update(start=0.0, end=1.0)
                self.insets[name].y_range.update(start=0.0, end=1.0)
                self.inset_labels[name].update(text="off the grid", x=0.02, y=0.98)
                continue
            self._inset_sources[name].data = {"x": w[near], "y": layers.flux[near]}
            half = INSET_HALF_WIDTH_REST * (1 + z)
            self.insets[name].x_range.update(start=float(centre - half), end=float(centre + half))
            shown = layers.flux[near][np.isfinite(layers.flux[near])]
            low, high = (float(shown.min()), float(shown.max())) if shown.size else layers.ylim
            pad = 0.08 * (high - low or 1.0)
            self.insets[name].y_range.update(start=low - pad, end=high + pad)
            self.inset_labels[name].update(text=f"at {centre:.0f} Å", x=float(centre - half), y=high + pad)
            self._inset_spans[name].update(location=centre, visible=True)
