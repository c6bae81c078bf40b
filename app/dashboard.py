"""The page: catalogue table, screening, embedding map and inspector, linked through a Session.

Views are functions of the session's parameters (``pn.bind``), so a change anywhere (a point
picked in the map, a row clicked, a key pressed, a slider moved) redraws what depends on it.
"""

from __future__ import annotations

import io
import logging
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from html import escape
from pathlib import Path
from urllib.parse import unquote

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
from bokeh.events import Tap
from bokeh.models import ColumnDataSource, Span

from mtopnet_core import grid
from mtopnet_core.metrics import PEAK_WINDOW_DZ
from mtopnet_core.tasks import SCALAR_TASKS

from .data import APP_MC_PASSES, MAX_UPLOAD_BYTES, InspectedObject
from .hotkeys import KEYS, Hotkeys
from .inspections import ISSUE_MARKS, QUALITY_FLAGS
from .inspector import (
    COLOURS,
    DEFAULT_SMOOTHING,
    MASKED_STYLES,
    STRONG_LINES,
    InspectorFigures,
    SpectrumLayers,
    spectrum_layers,
)
from .sources import resolve_under_roots, source_kind
from .state import QUEUES, SCREENING_RANGES, Session

__all__ = ["Dashboard", "COLOUR_CHOICES", "TABLE_COLUMNS"]

logger = logging.getLogger(__name__)

_BACKGROUND = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mtopnet-background")
"""Threads for the heavy requests of every session (TensorFlow and NumPy release the GIL)."""

COLOUR_CHOICES = {
    "redshift (true)": "z_true", "redshift (predicted)": "z_peak", "log M* (true)": "log_mstar_true",
    "log M* (predicted)": "log_mstar_pred", "log SFR (true)": "log_sfr_true", "log SFR (predicted)": "log_sfr_pred",
    "H-alpha flux (log)": "log_flux_halpha", "class": "galaxy_class", "success": "success", "entropy": "entropy",
}
HELP_TEXT = """**Terms**

- **Δz** = z_peak − z_true (the paper's; not divided by 1 + z). A redshift is **good** when |Δz| is below the
  threshold chosen under *success* (0.01 by default), **failed** otherwise.
- **accuracy**: the fraction of good redshifts, of all objects (*before*) or of those the screening keeps
  (*after*); **completeness**: the fraction kept.
- **rejected**: the fraction screened out; **false rejections**: the fraction of the good redshifts that the
  screening removes.
- **entropy** of the redshift PDF: low for one sharp peak (screening keeps entropy *below* the slider);
  **skewness** of the probability vector: high for one sharp peak (kept *above*).
- **flags**: predictions outside the model's training domain (partial coverage, redshift or mass out of range)."""
"""What the page's numbers mean, shown in the help."""

TABLE_COLUMNS = ["object_id", "z_true", "z_peak", "abs_dz", "entropy", "skewness", "m_h", "t_exp_h", "galaxy_class",
                 "log_mstar_true", "log_mstar_pred", "log_sfr_true", "log_sfr_pred", "vi_quality", "coverage", "flags",
                 "problem"]
MAX_SOLUTIONS = 5
INSPECTOR_COOKIE = "mtopnet_inspector"
"""Cookie in which the browser keeps the inspector's name."""


def _batched(callback):
    """Run a callback with the page's updates held, so that they reach the browser as one message.

    Only for callbacks that update widgets and the inspector's figures in place: with an upload
    (which re-renders the HoloViews plots) held this way, the page never showed the result
    (Panel 1.9.4).
    """
    def run(*args, **kwargs):
        with pn.io.hold():
            return callback(*args, **kwargs)
    return run


class Dashboard(pn.viewable.Viewer):
    """The whole app for one session.

    Parameters
    ----------
    session : Session
    roots : tuple of pathlib.Path
        Folders under which the page may open results folders and data sets.
    """

    def __init__(self, session: Session, roots: tuple[Path, ...] = (), **params) -> None:
        super().__init__(**params)
        self.session = s = session
        self.roots = roots
        self.wavelength = grid.wavelength_grid()
        self.figures = InspectorFigures(self.wavelength)
        self._marker = ColumnDataSource({"x": [], "y": []})
        self._curve_point = ColumnDataSource({"x": [], "y": []})
        self._thresholds = {column: Span(dimension="height", line_color="orange") for column in ("entropy", "skewness")}
        self._map_ids: list[str] = []
        self._map_xy = np.empty((0, 2))
        self._map_source: ColumnDataSource | None = None
        self.message = pn.pane.Alert("", alert_type="info", visible=False, sizing_mode="stretch_width",
                                     css_classes=["mtopnet-message"])
        # --- controls
        self.colour = pn.widgets.Select(label="colour the map by", options=list(COLOUR_CHOICES), value="success",
                                        css_classes=["mtopnet-colour"])
        self.entropy_slider = pn.widgets.FloatSlider.from_param(s.param.entropy_max, label="entropy below")
        self.skewness_slider = pn.widgets.FloatSlider.from_param(s.param.skewness_min, label="skewness above")
        self.use_entropy = pn.widgets.Checkbox.from_param(s.param.use_entropy, label="screen by entropy")
        self.use_skewness = pn.widgets.Checkbox.from_param(s.param.use_skewness, label="screen by skewness")
        self.use_flags = pn.widgets.Checkbox.from_param(s.param.use_flags, label="screen out flagged",
                                                        css_classes=["mtopnet-use-flags"])
        self.dz_select = pn.widgets.Select.from_param(s.param.dz_threshold, label="success: |Δz| below")
        self.queue_select = pn.widgets.Select.from_param(s.param.queue_kind, label="queue", options=list(QUEUES),
                                                         css_classes=["mtopnet-queue"])
        self.smoothing = pn.widgets.IntSlider(label="smoothing (channels, inverse-variance weighted)", start=1,
                                              end=25, value=DEFAULT_SMOOTHING, width=300)
        self.masked_style = pn.widgets.RadioButtonGroup(label="masked channels", options=list(MASKED_STYLES),
                                                        value=MASKED_STYLES[0], css_classes=["mtopnet-masked-style"])
        self.show_sky = pn.widgets.Checkbox(label="sky", value=True)
        self.show_error = pn.widgets.Checkbox(label="error", value=True)
        # the browser remembers the name (a cookie of this site only), so a reload keeps it
        s.inspector = s.inspector or unquote(pn.state.cookies.get(INSPECTOR_COOKIE, ""))[:80]
        self.inspector_name = pn.widgets.TextInput.from_param(s.param.inspector, label="inspector",
                                                              placeholder="your name (required to flag)",
                                                              css_classes=["mtopnet-inspector"])
        self.inspector_name.jscallback(value=f"""
            document.cookie = '{INSPECTOR_COOKIE}=' + encodeURIComponent(cb_obj.value)
                + '; path=/; max-age=31536000; SameSite=Strict';""")
        self.hotkeys = Hotkeys()
        self.hotkeys.param.watch(self._on_key, "last")
        # over the page at its top right, so that opening it moves nothing
        self.help = pn.pane.Markdown(
            HELP_TEXT + "\n\n**Keys** (ignored while typing)\n\n" + "\n".join(f"- `{k}` {v}" for k, v in KEYS.items()),
            visible=False, css_classes=["mtopnet-help"], width=460,
            styles={"background": "#fffbe6", "padding": "0 1em", "position": "fixed", "top": "48px", "right": "16px",
                    "z-index": "1000", "box-shadow": "0 2px 8px rgba(0,0,0,0.3)", "max-height": "85vh",
                    "overflow-y": "auto"})
        self.help_button = pn.widgets.Toggle(label="? help", width=80, css_classes=["mtopnet-help-button"])
        self.help_button.link(self.help, value="visible")
        self.open_path = pn.widgets.TextInput(placeholder="results folder or data set on the server", width=340,
                                              css_classes=["mtopnet-open-path"])
        self.open_button = pn.widgets.Button(label="open", width=70, css_classes=["mtopnet-open"])
        self.open_button.on_click(self._on_open)
        # files travel in chunks (one websocket message each stays under the server's 20 MiB limit),
        # and the browser refuses a file over the limit before sending it
        self.uploader = pn.widgets.FileDropper(multiple=True, max_file_size=f"{MAX_UPLOAD_BYTES // 10**6}MB",
                                               chunk_size=4 * 10**6, height=90, width=340,
                                               css_classes=["mtopnet-upload"])
        self.uploader.param.watch(self._on_upload, "value")
        self._dropped: dict[str, bytes] = {}
        self.where = pn.widgets.TextInput(label="rows where (Enter)", placeholder="e.g. abs_dz >= 0.01, m_h < 24",
                                          sizing_mode="stretch_width", css_classes=["mtopnet-where"])
        self.where.param.watch(self._on_where, "value")
        self.table = self._make_table()
        self._reset_zoom = True  # the next drawing of the inspector shows the whole spectrum
        self._selection_stream: hv.streams.Selection1D | None = None
        self._tap_figures: set[str] = set()

    # ------------------------------------------------------------------------------------------
    # catalogue table
    def _table_frame(self) -> pd.DataFrame:
        s = self.session
        cat = s.data.catalogue
        frame = cat.reindex(columns=[c for c in TABLE_COLUMNS if c in cat or c == "vi_quality"]).copy()
        frame["vi_quality"] = s.inspections.qualities(cat["object_id"])
        if s.selection:
            frame = frame[frame["object_id"].astype(str).isin(set(s.selection))]
        frame["object_id"] = frame["object_id"].astype(str)
        return frame.reset_index(drop=True)

    def _make_table(self) -> pn.widgets.Tabulator:
        table = pn.widgets.Tabulator(
            self._table_frame(), pagination="remote", page_size=15, show_index=False, disabled=True,
            selectable=False, sizing_mode="stretch_width", height=470,
            header_filters={"object_id": {"type": "input", "func": "like"},
                            "galaxy_class": {"type": "input", "func": "like"}},
            formatters={c: {"type": "money", "precision": 4} for c in ("z_true", "z_peak", "abs_dz")},
            css_classes=["mtopnet-table"])
        table.on_click(self._on_table_click)
        # not on threshold moves: rebuilding a 20 000-row table would make the sliders sluggish
        self.session.param.watch(lambda *_: self._refresh_table(), ["selection", "catalogue_version",
                                                                    "inspection_version"])
        return table

    def _refresh_table(self) -> None:
        self.table.value = self._table_frame()

    @_batched
    def _on_where(self, event) -> None:
        """Select the objects meeting the typed conditions (they fill the table and the queue)."""
        s, text = self.session, event.new.strip()
        try:
            ids = s.where(text) if text else []
        except ValueError as exc:
            self.notify(f"{exc}. The table keeps its {len(self.table.value)} rows.", "warning")
            return
        if text and not ids:
            self.notify(f"no objects where {text}. The table keeps its {len(self.table.value)} rows.", "warning")
            return
        s.selection = ids
        if text:
            s.queue_kind = "selection"
            self.notify(f"{len(ids)} objects where {text}: in the table and the inspection queue", "info")
        else:
            self.notify("")

    @_batched
    def _on_table_click(self, event) -> None:
        try:
            self.session.current = str(self.table.value["object_id"].iloc[event.row])
        except (IndexError, KeyError):
            logger.debug("click outside the table's rows: %s", event)

    # ------------------------------------------------------------------------------------------
    # embedding map
    def _map_frame(self) -> pd.DataFrame:
        cat = self.session.data.catalogue
        if "umap_x" not in cat:
            return pd.DataFrame(columns=["umap_x", "umap_y", "object_id", "colour"])
        frame = cat[["object_id", "umap_x", "umap_y"]].copy()
        frame["object_id"] = frame["object_id"].astype(str)
        column = COLOUR_CHOICES[self.colour.value]
        if column == "success":
            values = np.where(self.session.success(), "good", "failed")
            values[~np.isfinite(cat.get("z_true", pd.Series(np.nan, index=cat.index)).to_numpy(float))] = "no truth"
        elif column == "log_flux_halpha":
            with np.errstate(divide="ignore", invalid="ignore"):
                values = np.log10(cat["flux_halpha"].to_numpy(float)) if "flux_halpha" in cat else np.nan
        elif column in cat:
            values = cat[column].astype(str).to_numpy() if column == "galaxy_class" else cat[column].to_numpy(float)
        else:
            values = np.nan
        frame["colour"] = values
        return frame[np.isfinite(frame["umap_x"].to_numpy(float))].reset_index(drop=True)

    def _points(self, colour: str, version: int, dz: float) -> hv.Points:
        frame = self._map_frame()
        self._map_ids = frame["object_id"].tolist()
        self._map_xy = frame[["umap_x", "umap_y"]].to_numpy(float)
        categorical = not pd.api.types.is_numeric_dtype(frame["colour"])
        points = hv.Points(frame, ["umap_x", "umap_y"], ["colour", "object_id"])
        cmap = ({name: COLOURS[name] for name in ("good", "failed", "no truth")} if colour == "success"
                else "Category10" if categorical else "viridis")
        style = {"color": "colour", "cmap": cmap, "colorbar": not categorical,
                 "clipping_colors": {"NaN": "lightgrey"}}
        # no tap tool: a tap shows an object without selecting it (a selection refills the table)
        return points.opts(size=4, alpha=0.7, tools=["box_select", "lasso_select", "hover"],
                           active_tools=["box_select"], nonselection_alpha=0.15, width=540, height=440,
                           xaxis=None, yaxis=None, title=f"Embedding (UMAP), coloured by {colour}",
                           show_legend=categorical, legend_position="bottom_left",
                           # on the overlay level, moving the cross repaints it alone, not the 20 000 points
                           hooks=[lambda plot, element: self._add_scatter(
                               plot, self._marker, marker="x", size=18, color=COLOURS["current"], line_width=3,
                               level="overlay"),
                                  self._wire_map], **style)

    @staticmethod
    def _add_scatter(plot, source: ColumnDataSource, **style) -> None:
        """HoloViews hook: a scatter of one of our own data sources (updated in place) on a figure, once."""
        figure = plot.state
        if not any(getattr(r, "data_source", None) is source for r in figure.renderers):
            figure.scatter("x", "y", source=source, **style)

    def _wire_map(self, plot, element) -> None:
        """HoloViews hook: the map's taps straight to ``_on_map_tap`` (once per figure), and no hover glyph.

        A Bokeh event callback, not a HoloViews ``Tap`` stream: the stream's queue and timeouts
        added ~0.1 s to every tap. Without a hover glyph the tooltip still shows, but the mouse
        moving over the map no longer repaints its 20 000 points (~0.1 s each time in a browser
        without a GPU).
        """
        plot.handles["glyph_renderer"].hover_glyph = None
        self._map_source = plot.handles["source"]
        self._show_selection_on_map()
        figure = plot.state
        if figure.id not in self._tap_figures:
            self._tap_figures.add(figure.id)
            figure.on_event(Tap, lambda event: self._on_map_tap(event.x, event.y))

    def _show_selection_on_map(self, *_) -> None:
        """The map highlights exactly the selected objects, however they were chosen (a box on the
        map, or typed conditions)."""
        if self._map_source is None:
            return
        wanted = set(self.session.selection)
        indices = [i for i, object_id in enumerate(self._map_ids) if object_id in wanted]
        if list(self._map_source.selected.indices) != indices:
            self._map_source.selected.indices = indices

    def _move_current_marker(self, *_) -> None:
        s = self.session
        try:
            row = s.current_row()
            x, y = float(row.get("umap_x", np.nan)), float(row.get("umap_y", np.nan))
        except KeyError:
            x = y = np.nan
        self._marker.data = {"x": [x] if np.isfinite(x) else [], "y": [y] if np.isfinite(y) else []}

    def _embedding_plot(self, colour: str) -> pn.pane.HoloViews:
        """The map in one colouring: a new Bokeh figure per colouring, since a figure cannot swap
        its categorical colour mapper for a continuous one (Bokeh refused, and the map kept its
        old colours)."""
        s = self.session
        points = hv.DynamicMap(pn.bind(self._points, colour=colour, version=s.param.catalogue_version,
                                       dz=s.param.dz_threshold))
        self._selection_stream = hv.streams.Selection1D(source=points)
        self._selection_stream.param.watch(self._on_map_selection, "index")
        return pn.pane.HoloViews(points, css_classes=["mtopnet-embedding"])

    def embedding_view(self) -> pn.viewable.Viewable:
        self.session.param.watch(self._move_current_marker, ["current", "catalogue_version"])
        self.session.param.watch(self._show_selection_on_map, "selection")
        self._move_current_marker()
        return pn.panel(pn.bind(self._embedding_plot, self.colour))

    @_batched
    def _on_map_tap(self, x: float | None, y: float | None) -> None:
        """Show the object nearest to a tap (data coordinates), even where points overlap."""
        if x is None or y is None:
            return
        if len(self._map_ids):
            distance = np.hypot(self._map_xy[:, 0] - x, self._map_xy[:, 1] - y)
            self.session.current = self._map_ids[int(np.nanargmin(distance))]

    @_batched
    def _on_map_selection(self, event) -> None:
        ids = [self._map_ids[i] for i in event.new if i < len(self._map_ids)]
        self.session.select(ids)
        if len(ids) > 1:
            self.session.queue_kind = "selection"

    # ------------------------------------------------------------------------------------------
    # screening
    def _histogram(self, column: str, dz: float, version: int) -> hv.Overlay:
        """Good and failed redshifts' distribution of a PDF metric (changes with |dz| only)."""
        s = self.session
        cat = s.data.catalogue
        truth = np.isfinite(cat.get("z_true", pd.Series(np.nan, index=cat.index)).to_numpy(float))
        good = s.success()
        values = cat[column].to_numpy(float)
        top = SCREENING_RANGES[column][1]
        bins = np.linspace(0, max(top, np.nanmax(values) if np.isfinite(values).any() else top), 40)
        overlay = []
        # objects without truth (uploads) are neither: normalised on their own, two of them drew 0.5-high bars
        for name, mask in (("good", truth & good), ("failed", truth & ~good)):
            colour = COLOURS[name]
            if mask.any():
                # each group normalised to 1, as in the paper's Fig. 12: the few failures stay visible
                counts, edges = np.histogram(values[mask & np.isfinite(values)], bins=bins)
                fraction = counts / max(counts.sum(), 1)
                overlay.append(hv.Histogram((edges, fraction), kdims=[column], vdims=["fraction"],
                                            label=f"{name} ({counts.sum()})")
                               .opts(fill_color=colour, alpha=0.5, line_color=None))
        return hv.Overlay(overlay).opts(width=620, height=230, legend_position="top_right",
                                        title=f"{column} of the PDFs: good and failed redshifts"
                                        + (f" ({(~truth).sum()} without truth left out)" if (~truth).any() else ""),
                                        hooks=[lambda plot, element: self._add_layout(plot, self._thresholds[column])])

    @staticmethod
    def _add_layout(plot, annotation) -> None:
        """HoloViews hook: put one of our Bokeh annotations on a figure (once)."""
        if annotation not in plot.state.center:
            plot.state.add_layout(annotation)

    def _move_thresholds(self, *_) -> None:
        """The sliders' positions on the histograms, and the curve's current point, updated in place."""
        s = self.session
        for column, value, used in (("entropy", s.entropy_max, s.use_entropy),
                                    ("skewness", s.skewness_min, s.use_skewness)):
            self._thresholds[column].update(location=value, line_width=3 if used else 1,
                                            line_dash="solid" if used else "dashed")
        point = {"x": [], "y": []}
        if s.has_truth:
            truth = np.isfinite(s.data.catalogue["z_true"].to_numpy(float))
            kept = s.kept()[truth]
            if kept.any():
                point = {"x": [float(kept.mean())], "y": [float(s.success()[truth][kept].mean())]}
        self._curve_point.data = point

    def _numbers(self, entropy_max, skewness_min, use_entropy, use_skewness, use_flags, dz, version) -> str:
        s = self.session
        table = s.screening_numbers()
        kept = s.kept()
        lines = [f"**{kept.sum()} of {len(kept)} objects kept** "
                 f"({100 * (1 - kept.mean()):.1f}% screened out)"]
        if not table.empty:
            lines += ["", "| t_exp | n | accuracy before | accuracy after | rejected | false rejections |",
                      "|---|---|---|---|---|---|"]
            def fraction(value: float) -> str:
                return "–" if not np.isfinite(value) else f"{value:.3f}"

            for name, row in table.iterrows():
                lines.append(f"| {name} | {row['n']:.0f} | " + " | ".join(
                    fraction(row[k]) for k in ("accuracy_before", "accuracy_after", "rejected", "false_rejections"))
                    + " |")
            lines.append(f"\naccuracy: fraction with |Δz| < {dz:g} (Δz = z_peak − z_true), of all objects "
                         "(before) or of those kept (after) · rejected: fraction screened out · false rejections: "
                         "fraction of the good redshifts that the screening removes")
        return "\n".join(lines)

    def _curve(self, dz: float, version: int, skewness_min: float, use_skewness: bool, use_flags: bool) -> hv.Curve:
        """Accuracy against completeness as the entropy cut moves, the other cuts held (redrawn when
        they change; the entropy slider only moves the current point)."""
        s = self.session
        if not s.has_truth:
            return hv.Curve([], "completeness", "accuracy").opts(title="no truth: accuracy needs a mock test set")
        # screening away more than half the objects is never the question: the axes show the rest
        curve = s.completeness_curve().query("completeness >= 0.5")
        low = float(np.nanmin(curve["accuracy"])) if len(curve) else 0.9
        return hv.Curve(curve, "completeness", "accuracy").opts(
            color="black", width=600, height=260, title="accuracy against completeness (entropy cut)",
            xlim=(0.5, 1.0), ylim=(max(0.0, low - 0.01), 1.0),
            hooks=[lambda plot, element: self._add_scatter(plot, self._curve_point, color="orange", size=12)])

    def screening_view(self) -> pn.viewable.Viewable:
        s = self.session
        bound = dict(entropy_max=s.param.entropy_max, skewness_min=s.param.skewness_min,
                     use_entropy=s.param.use_entropy, use_skewness=s.param.use_skewness, use_flags=s.param.use_flags,
                     dz=s.param.dz_threshold, version=s.param.catalogue_version)
        # histograms change with |dz| only, the curve with the cuts other than entropy; the threshold
        # lines, the curve's point and the numbers follow the sliders in place (a re-rendered
        # HoloViews plot costs ~0.3 s per move)
        s.param.watch(self._move_thresholds, ["entropy_max", "skewness_min", "use_entropy", "use_skewness",
                                              "use_flags", "dz_threshold", "catalogue_version"])
        self._move_thresholds()
        return pn.Column(
            pn.Row(self.use_entropy, self.entropy_slider, self.use_skewness, self.skewness_slider, self.use_flags,
                   self.dz_select),
            pn.Row(*[pn.pane.HoloViews(
                hv.DynamicMap(pn.bind(self._histogram, column, dz=s.param.dz_threshold,
                                      version=s.param.catalogue_version)),
                css_classes=[f"mtopnet-{column}-histogram"]) for column in ("entropy", "skewness")]),
            pn.Row(pn.pane.Markdown(pn.bind(self._numbers, **bound), css_classes=["mtopnet-accuracy"],
                                    sizing_mode="stretch_width"),
                   pn.pane.HoloViews(hv.DynamicMap(pn.bind(self._curve, dz=s.param.dz_threshold,
                                                           version=s.param.catalogue_version,
                                                           skewness_min=s.param.skewness_min,
                                                           use_skewness=s.param.use_skewness,
                                                           use_flags=s.param.use_flags)),
                                     css_classes=["mtopnet-curve"])),
            sizing_mode="stretch_width")

    # ------------------------------------------------------------------------------------------
    # inspector
    def _draw_inspector(self, *events) -> None:
        """Redraw the inspector's figures for the current object, solution and smoothing.

        The spectrum is read, its layers computed and its saliency map taken in a background
        thread (~0.1 s of store reading and network gradient); the figures change on the event
        loop once that is done, unless the page has asked for another object, solution or
        smoothing meanwhile (then only the newest request is drawn).
        """
        s = self.session
        self._reset_zoom |= not events or any(e.name in ("current", "catalogue_version") for e in events)
        wanted = (s.current, s.display_z, self.smoothing.value, self.masked_style.value)
        try:
            row = s.current_row()
        except KeyError as exc:
            self.figures.clear(str(exc).strip("'\""))
            return
        z_peak = float(row["z_peak"])
        z_true = None if row.get("z_true") is None or pd.isna(row.get("z_true")) else float(row["z_true"])
        data, sky_threshold = s.data, s.data.model.preprocessing.sky_threshold

        def prepare() -> tuple[InspectedObject, SpectrumLayers, np.ndarray] | str:
            try:
                spectrum = data.spectrum(wanted[0])
            except KeyError as exc:
                return str(exc).strip("'\"")
            layers = spectrum_layers(spectrum, self.wavelength, sky_threshold, wanted[2], wanted[3])
            z_bin = None if wanted[1] is None else int(grid.redshift_to_bin(wanted[1]))
            saliency = (data.saliency(spectrum, z_bin) if np.isfinite(z_peak)
                        else np.full(grid.N_CHANNELS, np.nan))
            return spectrum, layers, saliency

        @_batched
        def draw(prepared) -> None:
            if (s.current, s.display_z, self.smoothing.value, self.masked_style.value) != wanted:
                return  # a newer request is on its way
            if isinstance(prepared, str):
                self.figures.clear(prepared)
                return
            spectrum, layers, saliency = prepared
            self.figures.show(wanted[0], spectrum, layers, saliency, z_peak, z_true, wanted[1], self._reset_zoom)
            self._reset_zoom = False

        self._in_background(prepare, draw, "drawing the spectrum")

    def _solutions_view(self) -> pn.viewable.Viewable:
        """The PDF's solutions, highest first; choosing one draws the lines at that redshift.

        Buttons with fixed labels (1 to 5) beside a list of the solutions: a button whose label
        changes is re-rendered, and the browser then lays out the whole page again (~0.15 s per
        object on two cores), while the list is text.
        """
        s = self.session
        choice = pn.widgets.RadioButtonGroup(options={str(k + 1): k for k in range(MAX_SOLUTIONS)}, value=None,
                                             color="primary", variant="outline", width=220,
                                             css_classes=["mtopnet-solutions"])
        listing = pn.pane.HTML("", css_classes=["mtopnet-solution-list"], width=330, height=120)
        syncing = {"on": False}
        listed: list[float] = []

        def show(*_):
            try:
                solutions = s.solutions()[:MAX_SOLUTIONS]
            except KeyError:
                solutions = []
            listed[:] = [z for z, _, _ in solutions]
            listing.object = "<br>".join(f"<b>{k + 1}</b> · z = {z:.4f} (height {height:.2f}, "
                                         f"p(|Δz|&lt;{PEAK_WINDOW_DZ:g}) {mass:.2f})"
                                         for k, (z, height, mass) in enumerate(solutions)) or "no solutions"
            if s.display_z is None:  # the lines are at the peak
                shown = 0 if solutions else None
            else:  # key `a` also reaches solutions beyond the listed ones: then none is marked
                shown = next((k for k, z in enumerate(listed) if z == s.display_z), None)
            syncing["on"] = True
            choice.value = shown
            syncing["on"] = False

        def choose(event):
            if not syncing["on"] and event.new is not None and event.new < len(listed):
                s.display_z = listed[event.new]

        choice.param.watch(_batched(choose), "value")
        s.param.watch(show, ["current", "display_z", "catalogue_version"])
        show()
        return pn.Column("**Solutions** (click to draw the lines there; key `a` cycles)", choice, listing)

    def _properties(self, current, version) -> str:
        s = self.session
        try:
            row = s.current_row()
        except KeyError as exc:
            return f"**{exc}**"

        def value(name: str, fmt: str = ".3f") -> str:
            """One value as the page shows it: a dash for anything missing (NaN, None, an empty text)."""
            v = row.get(name)
            if v is None or (not isinstance(v, str) and pd.isna(v)) or (isinstance(v, str) and not v.strip()):
                return "–"
            return escape(format(v, fmt) if not isinstance(v, str) else v)

        text = [f"### {escape(current)}",
                f"z peak **{value('z_peak', '.4f')}** · truth {value('z_true', '.4f')} · Δz {value('dz', '+.4f')}",
                f"entropy {value('entropy', '.2f')} · skewness {value('skewness', '.1f')} · "
                f"PDF width {value('pdf_width', '.4f')} · p(|dz|<{PEAK_WINDOW_DZ:g}) {value('p_within_0p01', '.2f')}",
                f"log M* {value('log_mstar_pred', '.2f')} (truth {value('log_mstar_true', '.2f')}) · "
                f"log SFR {value('log_sfr_pred', '.2f')} (truth {value('log_sfr_true', '.2f')})",
                f"m_H {value('m_h', '.2f')} · t_exp {value('t_exp_h', 'g')} h · class {value('galaxy_class', '')}"]
        if value("problem") != "–":
            text.append(f"**not processed:** {value('problem')}")
        if value("flags") != "–":
            text.append(f"**outside the model's training domain:** {value('flags')}")
        record = s.inspections.get(current)
        text.append(f"inspection: **{QUALITY_FLAGS[record.quality]}**"
                    + (f" · marks {record.issues}" if record.issues else "")
                    + (f" · z corrected {record.z_corrected:.4f}" if record.z_corrected is not None else "")
                    + (f" · by {escape(record.inspector)}" if record.inspector else "")
                    + (f" · comment: “{escape(record.comment)}”" if record.comment else ""))
        return "\n\n".join(text)

    def _mc_dropout(self, event) -> None:
        """MC-dropout spread of the current object, computed in the background."""
        s = self.session
        try:
            spectrum = s.data.spectrum(s.current)
        except KeyError as exc:
            self.mc_text.object = str(exc)
            return
        self.mc_text.object = f"MC dropout: running {APP_MC_PASSES} passes…"

        def show(out) -> None:
            self.mc_text.object = (
                f"MC dropout ({APP_MC_PASSES} passes): z peak {out.summary.z_peak[0]:.4f}, "
                f"PDF width {out.summary.width[0]:.4f}; "
                + "; ".join(f"{t.title} {out.quantities[t.name][0]:.2f} ± {out.quantity_spreads[t.name][0]:.2f}"
                            for t in SCALAR_TASKS))

        self._in_background(lambda: s.data.mc_dropout(spectrum, APP_MC_PASSES), show, "MC dropout")

    def _inspection_controls(self) -> pn.viewable.Viewable:
        s = self.session
        quality = pn.widgets.RadioButtonGroup(options={v.split(":")[0]: k for k, v in QUALITY_FLAGS.items()},
                                              color="default", css_classes=["mtopnet-quality"])
        marks = pn.widgets.CheckButtonGroup(options={f"{v} ({k})": k for k, v in ISSUE_MARKS.items()},
                                            css_classes=["mtopnet-marks"])
        z_input = pn.widgets.TextInput(label="corrected z", placeholder="e.g. 1.23456", width=140)
        comment = pn.widgets.TextInput(label="comment", placeholder="comment (saved on Enter)", width=360)
        syncing = {"on": False}

        def load(*_):
            syncing["on"] = True
            record = s.inspections.get(s.current)
            quality.value, marks.value = record.quality, list(record.issues)
            z_input.value = "" if record.z_corrected is None else f"{record.z_corrected:.5f}"
            comment.value = record.comment
            syncing["on"] = False

        def save(**changes):
            if syncing["on"]:
                return
            try:
                s.flag(**changes)
            except ValueError as exc:
                self.notify(str(exc), "danger")
                return
            if self.message.alert_type == "danger":  # the mistake it reported is mended
                self.notify("")

        def on_z(event):
            text = event.new.strip()
            try:
                save(z_corrected=float(text) if text else None)
            except ValueError:
                self.notify(f"corrected z {text!r} is not a number", "danger")

        quality.param.watch(lambda e: save(quality=int(e.new)), "value")
        marks.param.watch(lambda e: save(issues="".join(e.new)), "value")
        z_input.param.watch(on_z, "value")
        comment.param.watch(lambda e: save(comment=e.new), "value")
        s.param.watch(load, ["current", "inspection_version"])
        load()
        previous = pn.widgets.Button(label="◀ previous (b)", css_classes=["mtopnet-prev"])
        following = pn.widgets.Button(label="next (n) ▶", css_classes=["mtopnet-next"])
        uninspected = pn.widgets.Button(label="next uninspected (u)")
        previous.on_click(_batched(lambda e: s.step(-1)))
        following.on_click(_batched(lambda e: s.step(+1)))
        uninspected.on_click(_batched(lambda e: s.next_uninspected()))
        position = pn.pane.Markdown(pn.bind(
            lambda current, kind, version, sel: f"queue **{kind}**: {len(s.queue())} objects; "
                                                f"current **{escape(current)}**",
            s.param.current, s.param.queue_kind, s.param.inspection_version, s.param.selection),
            css_classes=["mtopnet-current"])
        disagreements = pn.pane.Markdown(pn.bind(self._conflicts_text, version=s.param.inspection_version,
                                                 current=s.param.current), css_classes=["mtopnet-conflicts"])
        return pn.Column(pn.Row(self.queue_select, previous, following, uninspected, position),
                         pn.Row(self.inspector_name, quality, marks), pn.Row(z_input, comment), disagreements,
                         sizing_mode="stretch_width")

    def _conflicts_text(self, version: int, current: str) -> str:
        """The objects on which inspectors disagree (re-read as this page moves or flags: other
        inspectors write to the same store)."""
        table = self.session.conflicts()
        if table.empty:
            return "Inspectors agree on every object that more than one of them flagged."

        def cell(text: str) -> str:
            return escape(str(text)).replace("|", "/")

        lines = [f"**{len(table)} object{'s' * (len(table) != 1)} on which inspectors disagree** "
                 "(queue *inspectors disagree*; the export lists why in `vi_conflict`)", "",
                 "| object | disagreement | inspector: quality, z |", "|---|---|---|"]
        lines += [f"| {cell(row.object_id)} | {cell(row.reason)} | {cell(row.inspectors)} |"
                  for row in table.head(8).itertuples()]
        if len(table) > 8:
            lines.append(f"\n… and {len(table) - 8} more")
        return "\n".join(lines)

    def inspector_view(self) -> pn.viewable.Viewable:
        s = self.session
        current, version = s.param.current, s.param.inspection_version
        self.mc_text = pn.pane.Markdown("")
        mc_button = pn.widgets.Button(label=f"MC-dropout spread ({APP_MC_PASSES} passes)")
        mc_button.on_click(self._mc_dropout)
        s.param.watch(lambda *_: setattr(self.mc_text, "object", ""), "current")
        s.param.watch(self._draw_inspector, ["current", "display_z", "catalogue_version"])
        self.smoothing.param.watch(self._draw_inspector, "value_throttled")
        self.masked_style.param.watch(self._draw_inspector, "value")
        for box in (self.show_sky, self.show_error):
            box.param.watch(lambda *_: self.figures.set_visible(self.show_error.value, self.show_sky.value), "value")
        self._draw_inspector()
        figures = self.figures
        return pn.Column(
            self._inspection_controls(),
            pn.Row(pn.Column(pn.pane.Markdown(pn.bind(self._properties, current=current, version=version),
                                              css_classes=["mtopnet-properties"]), mc_button, self.mc_text,
                             width=460),
                   self._solutions_view(),
                   pn.Column(pn.pane.Bokeh(figures.pdf, css_classes=["mtopnet-pdf"]),
                             pn.pane.Bokeh(figures.pdf_overview))),
            pn.Row(self.smoothing, pn.pane.Markdown("masked channels:", margin=(12, 4, 0, 16)), self.masked_style,
                   self.show_error, self.show_sky),
            figures.spectrum_caption,
            pn.pane.Bokeh(figures.spectrum, css_classes=["mtopnet-spectrum"]),
            figures.saliency_caption,
            pn.pane.Bokeh(figures.saliency, css_classes=["mtopnet-saliency"]),
            pn.Row(*[pn.pane.Bokeh(figures.insets[name]) for name in STRONG_LINES]),
            sizing_mode="stretch_width")

    # ------------------------------------------------------------------------------------------
    # messages, keys, uploads, export
    def notify(self, text: str, kind: str = "info") -> None:
        """Show a one-line message at the top of the page."""
        self.message.object, self.message.alert_type, self.message.visible = text, kind, bool(text)

    @_batched
    def _on_key(self, event) -> None:
        s, key = self.session, event.new.get("key")
        try:
            if key == "n":
                s.step(+1)
            elif key == "b":
                s.step(-1)
            elif key == "u":
                s.next_uninspected()
            elif key in "01234" and len(key) == 1:
                s.flag(quality=int(key))
            elif key == "a":
                s.cycle_solution()
            elif key == "p":
                s.display_z = None
            elif key in ISSUE_MARKS:
                s.toggle_issue(key)
            elif key == "?":
                self.help_button.value = not self.help_button.value
        except (KeyError, ValueError) as exc:
            self.notify(str(exc), "warning")

    def _on_upload(self, event) -> None:
        """Predict the files just dropped (the widget's value keeps the earlier ones too), in the background."""
        # the widget changes its value dict in place and keeps every file dropped so far
        files = dict(event.new or {})
        new = {name: content for name, content in files.items() if self._dropped.get(name) is not content}
        self._dropped = files
        if not new:
            return
        self.notify(f"reading and predicting {len(new)} file(s)…", "info")
        self._in_background(lambda: self.session.data.add_fits(new), self._show_upload, "the upload")

    def _show_upload(self, report) -> None:
        if report.added:
            self.session.catalogue_version += 1
            self.session.current = report.added[-1]
        text = []
        if report.added:
            text.append(f"added {len(report.added)} spectra: {', '.join(report.added[:5])}")
        text += report.problems
        self.notify(" · ".join(text), "danger" if report.problems and not report.added else
                    "warning" if report.problems else "success")

    def _in_background(self, work: Callable[[], object], then: Callable[[object], None], what: str) -> None:
        """Run ``work()`` in a background thread, then ``then(result)`` on the server's event loop.

        Heavy requests (uploads, MC dropout) must not hold the event loop, which serves every
        session; the page's models may only change on the loop, with the document's lock. Without
        a server (tests, notebooks) both run at once. A failure is logged and named on the page
        in one line, never shown as a traceback.
        """
        def fail() -> None:
            self.notify(f"{what} failed (the server's log has the details)", "danger")

        document = pn.state.curdoc
        if document is None or getattr(document, "session_context", None) is None:
            try:
                result = work()
            except Exception:  # noqa: BLE001 - one line on the page instead of a traceback
                logger.exception("%s failed", what)
                fail()
                return
            then(result)
            return

        def finished(future) -> None:
            try:
                result = future.result()
            except Exception:  # noqa: BLE001 - one line on the page instead of a traceback
                logger.exception("%s failed", what)
                document.add_next_tick_callback(fail)
                return
            document.add_next_tick_callback(lambda: then(result))

        _BACKGROUND.submit(work).add_done_callback(finished)

    def _on_open(self, event) -> None:
        """Open another results folder or data set under the roots: the page reloads with ``?open=PATH``."""
        text = self.open_path.value.strip()
        try:
            path = resolve_under_roots(text, self.roots)
            kind = source_kind(path)
        except ValueError as exc:
            self.notify(str(exc), "warning")
            return
        self.notify(f"opening {path.name} ({'predicting it first' if kind == 'store' else 'results'})…", "info")
        if pn.state.location is not None:
            pn.state.location.reload = True
            pn.state.location.update_query(open=str(path))

    def _export(self, kind: str) -> io.BytesIO:
        """The screened catalogue with the inspections, as a file to download."""
        s = self.session
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"export.{kind}"
            s.inspections.export(s.screened_catalogue(), path, inspector=s.inspector)
            return io.BytesIO(path.read_bytes())

    def export_view(self) -> pn.viewable.Viewable:
        downloads = [pn.widgets.FileDownload(callback=lambda kind=kind: self._export(kind),
                                             filename=f"mtopnet_all_objects_screen_kept_column.{kind}",
                                             label=f"export {kind.upper()}", color="success", width=130,
                                             description="every object, with the inspections and a screen_kept "
                                                         "column for the current screening")
                     for kind in ("csv", "ecsv", "fits")]
        return pn.Row(*downloads)

    def __panel__(self) -> pn.viewable.Viewable:
        overview = pn.Row(pn.Column(self.colour, self.embedding_view(), width=560),
                          pn.Column(self.where, self.table, sizing_mode="stretch_width"), sizing_mode="stretch_width")
        source = pn.pane.Markdown(pn.bind(self._source_line, version=self.session.param.catalogue_version),
                                  css_classes=["mtopnet-source"])
        page = pn.Column(
            source, self.message, self.help, self.hotkeys,
            pn.Row(self.export_view(), self.uploader, self.open_path, self.open_button, pn.layout.HSpacer(),
                   self.help_button, sizing_mode="stretch_width"),
            pn.Tabs(("Overview", pn.Column(overview, self.screening_view(), sizing_mode="stretch_width")),
                    ("Inspector", self.inspector_view()), dynamic=False, sizing_mode="stretch_width"),
            sizing_mode="stretch_width")
        if pn.state.location is not None:
            pn.state.location.param.watch(lambda *_: self._restyle_texts(page), "pathname")
        return page

    def _source_line(self, version: int) -> str:
        """What the page shows: the results folder, how many objects (uploads included), the model."""
        data = self.session.data
        uploaded = int((data.catalogue.get("source", pd.Series(dtype=str)) == "upload").sum())
        return (f"showing **{escape(str(data.results.path))}** · {len(data.catalogue)} objects"
                + (f" ({uploaded} uploaded)" if uploaded else "") + f" · model {escape(data.model_version)}")

    @staticmethod
    def _restyle_texts(page: pn.viewable.Viewable) -> None:
        """Re-send the texts' style sheets once, as the page's address arrives (just after loading).

        Panel (1.9.4) then forgets the document's style sheets, so the first change of every text
        pane afterwards sends new ones, which costs the browser ~0.6 s (first slider move, first
        tap). Done here, that cost falls once, at load, instead of on the first interactions.
        """
        with pn.io.hold():
            for pane in page.select(pn.pane.Markdown):
                pane.param.trigger("object")
