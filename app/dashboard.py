"""The page: catalogue table, screening, embedding map and inspector, linked through a Session.

Views are functions of the session's parameters (``pn.bind``), so a change anywhere (a point
picked in the map, a row clicked, a key pressed, a slider moved) redraws what depends on it.
"""

from __future__ import annotations

import io
import logging
import tempfile
from pathlib import Path

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn

from mtopnet_core import grid
from mtopnet_core.conventions import FLUX_UNIT_STRING
from mtopnet_core.lines import lines_in_range
from mtopnet_core.preprocessing import channel_mask

from .hotkeys import KEYS, Hotkeys
from .inspections import ISSUE_MARKS, QUALITY_FLAGS
from .state import QUEUES, Session

__all__ = ["Dashboard", "COLOUR_CHOICES", "TABLE_COLUMNS"]

logger = logging.getLogger(__name__)

COLOUR_CHOICES = {
    "redshift (true)": "z_true", "redshift (predicted)": "z_peak", "log M* (true)": "log_mstar_true",
    "log M* (predicted)": "log_mstar_pred", "log SFR (true)": "log_sfr_true", "log SFR (predicted)": "log_sfr_pred",
    "H-alpha flux (log)": "log_flux_halpha", "class": "galaxy_class", "success": "success", "entropy": "entropy",
}
TABLE_COLUMNS = ["object_id", "z_true", "z_peak", "abs_dz", "entropy", "skewness", "m_h", "t_exp_h", "galaxy_class",
                 "log_mstar_true", "log_mstar_pred", "log_sfr_true", "log_sfr_pred", "vi_quality", "problem"]
STRONG_LINES = ("[O II]", "H β", "[O III]", "H α")
WAVELENGTH = hv.Dimension("wavelength", label="observed wavelength", unit="Å")


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    # display only: a boxcar over unmasked channels
    if width <= 1:
        return values
    finite = np.isfinite(values)
    kernel = np.ones(width)
    num = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
    den = np.convolve(finite.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Start and end (exclusive) of each run of True."""
    padded = np.concatenate([[False], flags, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2], strict=True))


class Dashboard(pn.viewable.Viewer):
    """The whole app for one session.

    Parameters
    ----------
    session : Session
    """

    def __init__(self, session: Session, **params) -> None:
        super().__init__(**params)
        self.session = s = session
        self.wavelength = grid.wavelength_grid()
        self._before_gaps = np.flatnonzero(np.diff(self.wavelength) > 100)
        self.message = pn.pane.Alert("", alert_type="info", visible=False, sizing_mode="stretch_width",
                                     css_classes=["mtopnet-message"])
        # --- controls
        self.colour = pn.widgets.Select(label="colour the map by", options=list(COLOUR_CHOICES), value="success")
        self.entropy_slider = pn.widgets.FloatSlider.from_param(s.param.entropy_max, label="entropy below")
        self.skewness_slider = pn.widgets.FloatSlider.from_param(s.param.skewness_min, label="skewness above")
        self.use_entropy = pn.widgets.Checkbox.from_param(s.param.use_entropy, label="screen by entropy")
        self.use_skewness = pn.widgets.Checkbox.from_param(s.param.use_skewness, label="screen by skewness")
        self.dz_select = pn.widgets.Select.from_param(s.param.dz_threshold, label="success: |Δz| below")
        self.queue_select = pn.widgets.Select.from_param(s.param.queue_kind, label="queue", options=list(QUEUES))
        self.smoothing = pn.widgets.IntSlider(label="smoothing (channels)", start=1, end=25, value=1)
        self.show_sky = pn.widgets.Checkbox(label="sky", value=True)
        self.show_error = pn.widgets.Checkbox(label="error", value=True)
        self.inspector_name = pn.widgets.TextInput.from_param(s.param.inspector, label="inspector",
                                                              placeholder="your name")
        self.hotkeys = Hotkeys()
        self.hotkeys.param.watch(self._on_key, "last")
        self.help = pn.pane.Markdown(
            "**Keys** (ignored while typing)\n\n" + "\n".join(f"- `{k}` {v}" for k, v in KEYS.items()),
            visible=False, css_classes=["mtopnet-help"], styles={"background": "#fffbe6", "padding": "0 1em"})
        self.uploader = pn.widgets.FileInput(accept=".fits,.fit,.fits.gz", multiple=True, label="add FITS spectra")
        self.uploader.param.watch(self._on_upload, "value")
        self.table = self._make_table()
        self._selection_stream: hv.streams.Selection1D | None = None

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
        categorical = not pd.api.types.is_numeric_dtype(frame["colour"])
        points = hv.Points(frame, ["umap_x", "umap_y"], ["colour", "object_id"])
        cmap = ({"good": "#1f77b4", "failed": "#d62728", "no truth": "grey"} if colour == "success"
                else "Category10" if categorical else "viridis")
        style = {"color": "colour", "cmap": cmap, "colorbar": not categorical}
        return points.opts(size=4, alpha=0.7, tools=["box_select", "lasso_select", "tap", "hover"],
                           active_tools=["box_select", "tap"], nonselection_alpha=0.15, width=540, height=440,
                           xaxis=None, yaxis=None, title=f"Embedding (UMAP), coloured by {colour}",
                           show_legend=categorical, legend_position="bottom_left", **style)

    def _current_marker(self, current: str, version: int) -> hv.Points:
        cat = self.session.data.catalogue
        rows = cat[cat["object_id"].astype(str) == current]
        data = rows[["umap_x", "umap_y"]] if "umap_x" in rows else pd.DataFrame({"umap_x": [], "umap_y": []})
        return hv.Points(data, ["umap_x", "umap_y"]).opts(marker="x", size=18, color="red", line_width=3)

    def embedding_view(self) -> pn.viewable.Viewable:
        s = self.session
        points = hv.DynamicMap(pn.bind(self._points, colour=self.colour, version=s.param.catalogue_version,
                                       dz=s.param.dz_threshold))
        self._selection_stream = hv.streams.Selection1D(source=points)
        self._selection_stream.param.watch(self._on_map_selection, "index")
        # a tap shows the nearest object, even where points overlap
        hv.streams.Tap(source=points).add_subscriber(self._on_map_tap)
        marker = hv.DynamicMap(pn.bind(self._current_marker, current=s.param.current,
                                       version=s.param.catalogue_version))
        return pn.pane.HoloViews(points * marker, css_classes=["mtopnet-embedding"])

    def _on_map_tap(self, x: float | None = None, y: float | None = None) -> None:
        if x is None or y is None:
            return
        frame = self._map_frame()
        if len(frame):
            distance = np.hypot(frame["umap_x"].to_numpy(float) - x, frame["umap_y"].to_numpy(float) - y)
            self.session.current = str(frame["object_id"].iloc[int(np.nanargmin(distance))])

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
        top = 7.0 if column == "entropy" else 30.0
        bins = np.linspace(0, max(top, np.nanmax(values) if np.isfinite(values).any() else top), 40)
        overlay = []
        for name, mask, colour in (("good", truth & good, "#1f77b4"), ("failed", truth & ~good, "#d62728"),
                                   ("no truth", ~truth, "grey")):
            if mask.any():
                # each group normalised to 1, as in the paper's Fig. 12: the few failures stay visible
                counts, edges = np.histogram(values[mask & np.isfinite(values)], bins=bins)
                fraction = counts / max(counts.sum(), 1)
                overlay.append(hv.Histogram((edges, fraction), kdims=[column], vdims=["fraction"],
                                            label=f"{name} ({counts.sum()})")
                               .opts(fill_color=colour, alpha=0.5, line_color=None))
        return hv.Overlay(overlay).opts(width=620, height=230, legend_position="top_right",
                                        title=f"{column} of the PDFs: good and failed redshifts")

    @staticmethod
    def _threshold_line(value: float, used: bool) -> hv.VLine:
        # drawn on its own, so that moving a slider updates one line, not the histograms
        return hv.VLine(value).opts(color="orange", line_width=3 if used else 1,
                                    line_dash="solid" if used else "dashed")

    def _numbers(self, entropy_max, skewness_min, use_entropy, use_skewness, dz, version) -> pn.pane.Markdown:
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
            lines.append(f"\naccuracy = fraction with |Δz| < {dz:g}")
        return pn.pane.Markdown("\n".join(lines), css_classes=["mtopnet-accuracy"], sizing_mode="stretch_width")

    def _curve(self, dz: float, version: int) -> hv.Curve:
        """Accuracy against completeness as the entropy cut moves (changes with |dz| only)."""
        s = self.session
        if not s.has_truth:
            return hv.Curve([], "completeness", "accuracy").opts(title="no truth: accuracy needs a mock test set")
        return hv.Curve(s.completeness_curve(), "completeness", "accuracy").opts(
            color="black", width=600, height=260, title="accuracy against completeness (entropy cut)",
            xlim=(0, 1.02), ylim=(None, 1.01))

    def _curve_point(self, entropy_max, skewness_min, use_entropy, use_skewness, dz, version) -> hv.Points:
        s = self.session
        if not s.has_truth:
            return hv.Points([], ["completeness", "accuracy"])
        truth = np.isfinite(s.data.catalogue["z_true"].to_numpy(float))
        kept = s.kept()[truth]
        point = (kept.mean(), s.success()[truth][kept].mean() if kept.any() else np.nan)
        return hv.Points([point], ["completeness", "accuracy"]).opts(color="orange", size=12)

    def screening_view(self) -> pn.viewable.Viewable:
        s = self.session
        bound = dict(entropy_max=s.param.entropy_max, skewness_min=s.param.skewness_min,
                     use_entropy=s.param.use_entropy, use_skewness=s.param.use_skewness, dz=s.param.dz_threshold,
                     version=s.param.catalogue_version)
        return pn.Column(
            pn.Row(self.use_entropy, self.entropy_slider, self.use_skewness, self.skewness_slider, self.dz_select),
            pn.Row(*[pn.pane.HoloViews(
                hv.DynamicMap(pn.bind(self._histogram, column, dz=s.param.dz_threshold,
                                      version=s.param.catalogue_version))
                * hv.DynamicMap(pn.bind(self._threshold_line, s.param.entropy_max if column == "entropy"
                                        else s.param.skewness_min,
                                        s.param.use_entropy if column == "entropy" else s.param.use_skewness)),
                css_classes=[f"mtopnet-{column}-histogram"]) for column in ("entropy", "skewness")]),
            pn.Row(pn.bind(self._numbers, **bound),
                   pn.pane.HoloViews(hv.DynamicMap(pn.bind(self._curve, dz=s.param.dz_threshold,
                                                           version=s.param.catalogue_version))
                                     * hv.DynamicMap(pn.bind(self._curve_point, **bound)),
                                     css_classes=["mtopnet-curve"])),
            sizing_mode="stretch_width")

    # ------------------------------------------------------------------------------------------
    # inspector
    def _line_markers(self, z: float, colour: str, lo: float, hi: float, label_y: float) -> list:
        """Table 1 lines at redshift z: one Segments and one Labels element (fast to draw)."""
        found = lines_in_range(z, self.wavelength[0], self.wavelength[-1])
        if not found:
            return []
        x = np.array([observed for _, observed in found])
        segments = hv.Segments((x, np.full(x.size, lo), x, np.full(x.size, hi)), [WAVELENGTH, "flux", "x1", "y1"])
        names = [line.name for line, _ in found]
        labels = hv.Labels((x, np.full(x.size, label_y), names), [WAVELENGTH, "flux"], "name")
        return [segments.opts(color=colour, line_dash="dotted", line_width=1),
                labels.opts(text_color=colour, angle=90, text_font_size="8pt", text_align="right",
                            text_baseline="bottom")]

    def _spectrum_plot(self, current, display_z, smoothing, show_sky, show_error, version):
        s = self.session
        try:
            spec = s.data.spectrum(current)
        except KeyError as exc:
            return pn.pane.Alert(str(exc), alert_type="warning")
        row = s.current_row()
        # the channels the model did not see: sky lines, quality flags, bad values (core's mask)
        masked = channel_mask(spec.flux[None], spec.sky, spec.error[None], spec.mask[None],
                              s.data.model.preprocessing.sky_threshold)[0]
        flux = _smooth(np.where(np.isfinite(spec.flux), spec.flux, np.nan), smoothing)
        good = flux[np.isfinite(flux) & ~masked]
        flux[self._before_gaps] = np.nan  # no line drawn across the YJ-H gap
        lo, hi = np.percentile(good, [0.5, 99.5]) if good.size else (-1.0, 1.0)
        pad = 0.15 * (hi - lo or 1.0)
        lo, hi = lo - pad, hi + 2 * pad
        w = self.wavelength
        layers = [hv.Area((w, np.where(masked, hi, np.nan)), WAVELENGTH, "flux", label="masked (sky, flags)")
                  .opts(color="lightgrey", alpha=0.5, line_alpha=0)]
        if show_error:
            error = np.where(masked, np.nan, spec.error)
            error[self._before_gaps] = np.nan
            layers.append(hv.Curve((w, error), WAVELENGTH, "flux", label="error")
                          .opts(color="salmon", line_width=1))
        if show_sky:
            sky = spec.sky / np.nanmax(spec.sky) * (hi - lo) * 0.3 + lo
            layers.append(hv.Curve((w, sky), WAVELENGTH, "flux", label="sky (scaled)").opts(color="lightblue"))
        layers.append(hv.Curve((w, flux), WAVELENGTH, "flux", label="flux").opts(color="#333333", line_width=1))
        found = np.array([w[(start + stop - 1) // 2] for start, stop in _runs(spec.line_probability > 0.5)])
        if found.size:
            layers.append(hv.Segments((found, np.full(found.size, lo), found, np.full(found.size, hi)),
                                      [WAVELENGTH, "flux", "x1", "y1"], label="predicted line locations")
                          .opts(color="red", line_dash="dashed", line_width=1.5))
        z_lines = display_z if display_z is not None else row["z_peak"]
        if np.isfinite(z_lines):
            layers += self._line_markers(float(z_lines), "#2ca02c", lo, hi, hi)
        z_true = row.get("z_true", np.nan)
        if pd.notna(z_true) and np.isfinite(z_true):
            layers += self._line_markers(float(z_true), "#1f77b4", lo, hi, lo + 0.1 * (hi - lo))
        title = (f"{current}: lines at z = {z_lines:.4f} (green)"
                 + (f", truth z = {z_true:.4f} (blue)" if pd.notna(z_true) else "")
                 + "; red dashes: predicted line locations")
        return hv.Overlay(layers).opts(width=1450, height=330, ylim=(lo, hi), title=title,
                                       ylabel=f"flux [{FLUX_UNIT_STRING}]", legend_position="top_left",
                                       tools=["xwheel_zoom", "xpan"], active_tools=["xwheel_zoom"])

    def _inset(self, line_name: str, current, display_z, smoothing, version) -> hv.Overlay:
        """Zoom on one strong line at the displayed redshift (empty when it is off the grid)."""
        s = self.session
        empty = hv.Curve([], WAVELENGTH, "flux").opts(width=260, height=170, title=f"{line_name}: off the grid")
        try:
            spec, row = s.data.spectrum(current), s.current_row()
        except KeyError:
            return empty * hv.VLine(0).opts(alpha=0)
        z = display_z if display_z is not None else row["z_peak"]
        w = self.wavelength
        found = [observed for line, observed in lines_in_range(float(z), w[0], w[-1])
                 if line.name == line_name] if np.isfinite(z) else []
        near = np.abs(w - found[-1]) < 15 * (1 + z) if found else np.zeros(w.size, bool)
        if near.sum() < 3:
            return empty * hv.VLine(0).opts(alpha=0)
        flux = _smooth(np.where(spec.mask.astype(bool), np.nan, spec.flux), smoothing)
        return (hv.Curve((w[near], flux[near]), WAVELENGTH, "flux").opts(color="#333333")
                * hv.VLine(found[-1]).opts(color="#2ca02c", line_dash="dotted")).opts(
            width=260, height=170, title=f"{line_name} at {found[-1]:.0f} Å", framewise=True)

    def _saliency_plot(self, current, display_z, version, x_range=None):
        s = self.session
        try:
            spec = s.data.spectrum(current)
            row = s.current_row()
            z_bin = None if display_z is None else int(grid.redshift_to_bin(display_z))
            saliency = s.data.saliency(spec, z_bin) if np.isfinite(row["z_peak"]) else np.full(grid.N_CHANNELS, np.nan)
        except KeyError as exc:
            return hv.Curve([]).opts(title=str(exc))
        xlim = tuple(x_range) if x_range and None not in x_range else (self.wavelength[0], self.wavelength[-1])
        return hv.Curve((self.wavelength, saliency), WAVELENGTH, "saliency").opts(
            width=1450, height=150, color="purple", xlim=xlim, framewise=True,
            title="saliency |dp/dx| of the redshift "
                  + ("peak" if display_z is None else f"solution z = {display_z:.4f}"))

    def _pdf_plot(self, current, display_z, version):
        s = self.session
        try:
            spec = s.data.spectrum(current)
        except KeyError as exc:
            return hv.Curve([]).opts(title=str(exc))
        row = s.current_row()
        z = grid.redshift_bin_centres()
        layers = [hv.Curve((z, spec.pdf), "z", "probability").opts(color="#1f77b4")]
        if "z_true" in row and pd.notna(row["z_true"]):
            layers.append(hv.VLine(float(row["z_true"])).opts(color="red", line_width=2))
        if display_z is not None:
            layers.append(hv.VLine(display_z).opts(color="#2ca02c", line_dash="dashed"))
        return hv.Overlay(layers).opts(width=620, height=220, title="redshift PDF (blue), truth (red)",
                                       tools=["hover"])

    def _solutions(self, current, version):
        s = self.session
        try:
            solutions = s.solutions()
        except KeyError:
            return pn.pane.Markdown("")
        buttons = []
        for i, (z, height, mass) in enumerate(solutions):
            button = pn.widgets.Button(label=f"z = {z:.4f}  (height {height:.2f}, p(|dz|<0.01) {mass:.2f})",
                                       color="primary" if i == 0 else "default", width=330,
                                       css_classes=["mtopnet-solution"])
            button.on_click(lambda event, z=z: setattr(s, "display_z", z))
            buttons.append(button)
        return pn.Column("**Solutions** (click to draw the lines there; key `a` cycles)", *buttons)

    def _properties(self, current, version) -> str:
        s = self.session
        try:
            row = s.current_row()
        except KeyError as exc:
            return f"**{exc}**"

        def value(name: str, fmt: str = ".3f") -> str:
            v = row.get(name, np.nan)
            return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, fmt)

        text = [f"### {current}",
                f"z peak **{value('z_peak', '.4f')}** · truth {value('z_true', '.4f')} · Δz {value('dz', '+.4f')}",
                f"entropy {value('entropy', '.2f')} · skewness {value('skewness', '.1f')} · "
                f"PDF width {value('pdf_width', '.4f')} · p(|dz|<0.01) {value('p_within_0p01', '.2f')}",
                f"log M* {value('log_mstar_pred', '.2f')} (truth {value('log_mstar_true', '.2f')}) · "
                f"log SFR {value('log_sfr_pred', '.2f')} (truth {value('log_sfr_true', '.2f')})",
                f"m_H {value('m_h', '.2f')} · t_exp {value('t_exp_h', 'g')} h · class {row.get('galaxy_class', '–')}"]
        if row.get("problem"):
            text.append(f"**not processed:** {row['problem']}")
        record = s.inspections.get(current)
        text.append(f"inspection: **{QUALITY_FLAGS[record.quality]}**"
                    + (f" · marks {record.issues}" if record.issues else "")
                    + (f" · z corrected {record.z_corrected:.4f}" if record.z_corrected is not None else ""))
        return "\n\n".join(text)

    def _mc_dropout(self, event) -> None:
        s = self.session
        try:
            out = s.data.mc_dropout(s.data.spectrum(s.current), passes=20)
        except KeyError as exc:
            self.mc_text.object = str(exc)
            return
        self.mc_text.object = (f"MC dropout (20 passes): z peak {out.summary.z_peak[0]:.4f}, "
                               f"PDF width {out.summary.width[0]:.4f}; log M* {out.log_mstar[0]:.2f} ± "
                               f"{out.log_mstar_spread[0]:.2f}; "
                               f"log SFR {out.log_sfr[0]:.2f} ± {out.log_sfr_spread[0]:.2f}")

    def _inspection_controls(self) -> pn.viewable.Viewable:
        s = self.session
        quality = pn.widgets.RadioButtonGroup(options={v.split(":")[0]: k for k, v in QUALITY_FLAGS.items()},
                                              color="default", css_classes=["mtopnet-quality"])
        marks = pn.widgets.CheckButtonGroup(options={v: k for k, v in ISSUE_MARKS.items()},
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
        previous.on_click(lambda e: s.step(-1))
        following.on_click(lambda e: s.step(+1))
        uninspected.on_click(lambda e: s.next_uninspected())
        position = pn.bind(lambda current, kind, version, sel: pn.pane.Markdown(
            f"queue **{kind}**: {len(s.queue())} objects; current **{current}**",
            css_classes=["mtopnet-current"]), s.param.current, s.param.queue_kind, s.param.inspection_version,
            s.param.selection)
        return pn.Column(pn.Row(self.queue_select, previous, following, uninspected, position),
                         pn.Row(quality, marks), pn.Row(z_input, comment), sizing_mode="stretch_width")

    def inspector_view(self) -> pn.viewable.Viewable:
        s = self.session
        current, version = s.param.current, s.param.inspection_version
        self.mc_text = pn.pane.Markdown("")
        mc_button = pn.widgets.Button(label="MC-dropout spread (20 passes)")
        mc_button.on_click(self._mc_dropout)
        s.param.watch(lambda *_: setattr(self.mc_text, "object", ""), "current")
        spectrum = hv.DynamicMap(pn.bind(self._spectrum_plot, current=current, display_z=s.param.display_z,
                                         smoothing=self.smoothing, show_sky=self.show_sky, show_error=self.show_error,
                                         version=s.param.catalogue_version))
        # the saliency panel follows the spectrum's zoom (same wavelength axis)
        zoom = hv.streams.RangeX(source=spectrum)
        saliency = hv.DynamicMap(pn.bind(self._saliency_plot, current=current, display_z=s.param.display_z,
                                         version=s.param.catalogue_version), streams=[zoom])
        return pn.Column(
            self._inspection_controls(),
            pn.Row(pn.Column(pn.pane.Markdown(pn.bind(self._properties, current=current, version=version),
                                              css_classes=["mtopnet-properties"]), mc_button, self.mc_text,
                             width=460),
                   pn.Column(pn.bind(self._solutions, current=current, version=s.param.catalogue_version)),
                   pn.pane.HoloViews(hv.DynamicMap(pn.bind(self._pdf_plot, current=current,
                                                           display_z=s.param.display_z,
                                                           version=s.param.catalogue_version)))),
            pn.Row(self.smoothing, self.show_error, self.show_sky),
            pn.pane.HoloViews(spectrum, css_classes=["mtopnet-spectrum"]),
            pn.pane.HoloViews(saliency, css_classes=["mtopnet-saliency"]),
            # fixed panes whose contents change: creating figures anew is what costs in the browser
            pn.Row(*[pn.pane.HoloViews(hv.DynamicMap(pn.bind(self._inset, name, current=current,
                                                             display_z=s.param.display_z, smoothing=self.smoothing,
                                                             version=s.param.catalogue_version)),
                                       linked_axes=False) for name in STRONG_LINES]),
            sizing_mode="stretch_width")

    # ------------------------------------------------------------------------------------------
    # messages, keys, uploads, export
    def notify(self, text: str, kind: str = "info") -> None:
        """Show a one-line message at the top of the page."""
        self.message.object, self.message.alert_type, self.message.visible = text, kind, bool(text)

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
            elif key in ("z", "s"):
                s.toggle_issue(key)
            elif key == "?":
                self.help.visible = not self.help.visible
        except (KeyError, ValueError) as exc:
            self.notify(str(exc), "warning")

    def _on_upload(self, event) -> None:
        files = event.new
        if not files:
            return
        names = self.uploader.filename if isinstance(self.uploader.filename, list) else [self.uploader.filename]
        contents = files if isinstance(files, list) else [files]
        try:
            report = self.session.data.add_fits(dict(zip(names, contents, strict=False)))
        except Exception as exc:  # noqa: BLE001 - a bad upload must never take the page down
            logger.exception("upload failed")
            self.notify(f"upload failed: {exc}", "danger")
            return
        if report.added:
            self.session.catalogue_version += 1
            self.session.current = report.added[-1]
        text = []
        if report.added:
            text.append(f"added {len(report.added)} spectra: {', '.join(report.added[:5])}")
        text += report.problems
        self.notify(" · ".join(text), "danger" if report.problems and not report.added else
                    "warning" if report.problems else "success")

    def _export(self, kind: str) -> io.BytesIO:
        """The screened catalogue with the inspections, as a file to download."""
        s = self.session
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"export.{kind}"
            s.inspections.export(s.screened_catalogue(), path, inspector=s.inspector)
            return io.BytesIO(path.read_bytes())

    def export_view(self) -> pn.viewable.Viewable:
        downloads = [pn.widgets.FileDownload(callback=lambda kind=kind: self._export(kind),
                                             filename=f"mtopnet_screened.{kind}", label=f"export {kind.upper()}",
                                             color="success", width=130)
                     for kind in ("csv", "ecsv", "fits")]
        return pn.Row(self.inspector_name, *downloads)

    def __panel__(self) -> pn.viewable.Viewable:
        overview = pn.Row(pn.Column(self.colour, self.embedding_view(), width=560),
                          pn.Column(self.table, sizing_mode="stretch_width"), sizing_mode="stretch_width")
        return pn.Column(
            self.message, self.help, self.hotkeys,
            pn.Row(self.export_view(), self.uploader, sizing_mode="stretch_width"),
            pn.Tabs(("Overview", pn.Column(overview, self.screening_view(), sizing_mode="stretch_width")),
                    ("Inspector", self.inspector_view()), dynamic=False, sizing_mode="stretch_width"),
            sizing_mode="stretch_width")
