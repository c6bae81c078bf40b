"""The screening panel: entropy and skewness cuts, their histograms, accuracy and completeness."""

from __future__ import annotations

from html import escape

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, Span

from .inspector import COLOURS
from .page import Page, PageView, PromptFloatSlider, add_layout, add_scatter
from .state import SCREENING_RANGES

__all__ = ["Screening"]


NUMBERS_STYLE = """
table.mtopnet-numbers { border-collapse: collapse; font-size: 13px; }
table.mtopnet-numbers th, table.mtopnet-numbers td { border: 1px solid #999; padding: 3px 8px; }
table.mtopnet-numbers td { text-align: right; }
"""
"""The accuracy table's lines (an HTML pane has none of Markdown's table style)."""


class Screening(PageView):
    """The screening thresholds and what they do to accuracy and completeness."""

    def __init__(self, page: Page, **params) -> None:
        super().__init__(page, **params)
        s = self.session
        self.entropy_slider = PromptFloatSlider.from_param(s.param.entropy_max, label="entropy below")
        self.skewness_slider = PromptFloatSlider.from_param(s.param.skewness_min, label="skewness above")
        self.use_entropy = pn.widgets.Checkbox.from_param(s.param.use_entropy, label="screen by entropy")
        self.use_skewness = pn.widgets.Checkbox.from_param(s.param.use_skewness, label="screen by skewness")
        self.use_flags = pn.widgets.Checkbox.from_param(s.param.use_flags, label="screen out flagged",
                                                        css_classes=["mtopnet-use-flags"])
        self.dz_select = pn.widgets.Select.from_param(s.param.dz_threshold, label="success: |Δz| below")
        # named so that a page (and the browser tests) can find them
        self._curve_point = ColumnDataSource({"x": [], "y": []}, name="mtopnet-curve-point")
        self._thresholds = {column: Span(dimension="height", line_color="orange", name=f"mtopnet-{column}-threshold")
                            for column in ("entropy", "skewness")}
        # the threshold lines, the curve's point and the numbers follow the sliders in place (a
        # re-rendered HoloViews plot costs ~0.3 s per move)
        s.param.watch(self._move_thresholds, ["entropy_max", "skewness_min", "use_entropy", "use_skewness",
                                              "use_flags", "dz_threshold", "catalogue_version"])
        self._move_thresholds()

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
                                        hooks=[lambda plot, element: add_layout(plot, self._thresholds[column])])

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
        """The accuracy table as HTML (written here: rendering Markdown on every slider move cost the
        server a few ms of the ~0.1 s the move takes to show)."""
        s = self.session
        table = s.screening_numbers()
        kept = s.kept()
        html = [f"<p><b>{kept.sum()} of {len(kept)} objects kept</b> ({100 * (1 - kept.mean()):.1f}% screened out)</p>"]
        if not table.empty:
            def fraction(value: float) -> str:
                return "–" if not np.isfinite(value) else f"{value:.3f}"

            header = ("t_exp", "n", "accuracy before", "accuracy after", "rejected", "false rejections")
            rows = [[escape(str(name)), f"{row['n']:.0f}", *(fraction(row[k]) for k in (
                "accuracy_before", "accuracy_after", "rejected", "false_rejections"))]
                for name, row in table.iterrows()]
            html.append("<table class='mtopnet-numbers'><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
                        + "</table>")
            html.append(f"<p>accuracy: fraction with |Δz| &lt; {dz:g} (Δz = z_peak − z_true), of all objects "
                        "(before) or of those kept (after) · rejected: fraction screened out · false rejections: "
                        "fraction of the good redshifts that the screening removes</p>")
        return "".join(html)

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
            hooks=[lambda plot, element: add_scatter(plot, self._curve_point, color="orange", size=12)])

    def _mc_note(self) -> pn.pane.HTML:
        """Where the entropy slider starts for MC-dropout results, and why (empty otherwise)."""
        record = self.session.data.results.mc_screening()
        if record is None or record.get("entropy_max") is None:
            return pn.pane.HTML("", visible=False, css_classes=["mtopnet-mc-note"])
        return pn.pane.HTML(
            f"<p>MC-dropout PDFs ({record['passes']} passes): the entropy cut starts at {record['entropy_max']:g}, "
            f"chosen when the model was calibrated so that at most {100 * record['catastrophic_target']:g}% of the "
            "kept redshifts were catastrophic (|Δz| &gt; 0.5) on its calibration mock; the paper's 2 is for "
            "single-pass PDFs.</p>",
            css_classes=["mtopnet-mc-note"], sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        s = self.session
        bound = dict(entropy_max=s.param.entropy_max, skewness_min=s.param.skewness_min,
                     use_entropy=s.param.use_entropy, use_skewness=s.param.use_skewness, use_flags=s.param.use_flags,
                     dz=s.param.dz_threshold, version=s.param.catalogue_version)
        # histograms change with |dz| only, the curve with the cuts other than entropy
        return pn.Column(
            pn.Row(self.use_entropy, self.entropy_slider, self.use_skewness, self.skewness_slider, self.use_flags,
                   self.dz_select),
            self._mc_note(),
            pn.Row(*[pn.pane.HoloViews(
                hv.DynamicMap(pn.bind(self._histogram, column, dz=s.param.dz_threshold,
                                      version=s.param.catalogue_version)),
                css_classes=[f"mtopnet-{column}-histogram"]) for column in ("entropy", "skewness")]),
            pn.Row(pn.pane.HTML(pn.bind(self._numbers, **bound), css_classes=["mtopnet-accuracy"],
                                sizing_mode="stretch_width", stylesheets=[NUMBERS_STYLE]),
                   pn.pane.HoloViews(hv.DynamicMap(pn.bind(self._curve, dz=s.param.dz_threshold,
                                                           version=s.param.catalogue_version,
                                                           skewness_min=s.param.skewness_min,
                                                           use_skewness=s.param.use_skewness,
                                                           use_flags=s.param.use_flags)),
                                     css_classes=["mtopnet-curve"])),
            sizing_mode="stretch_width")

