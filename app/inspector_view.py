"""The inspector tab: one object's properties, solutions, PDF, spectrum, saliency map and line insets."""

from __future__ import annotations

import logging
from html import escape

import numpy as np
import pandas as pd
import panel as pn

from mtopnet_core import grid
from mtopnet_core.metrics import PEAK_WINDOW_DZ
from mtopnet_core.tasks import SCALAR_TASKS

from .data import APP_MC_PASSES, InspectedObject
from .inspection_view import InspectionControls
from .inspections import QUALITY_FLAGS
from .inspector import (
    DEFAULT_SMOOTHING,
    MASKED_STYLES,
    STRONG_LINES,
    InspectorFigures,
    SpectrumLayers,
    spectrum_layers,
)
from .page import Page, PageView, batched

__all__ = ["Inspector", "MAX_SOLUTIONS"]

logger = logging.getLogger(__name__)

QUOTES = "'\""
"""What str() of a KeyError puts around its message."""
MAX_SOLUTIONS = 5
"""Solutions of the PDF listed (and given a button) in the inspector."""


class Inspector(PageView):
    """The current object in detail, with the inspection controls above it."""

    def __init__(self, page: Page, **params) -> None:
        super().__init__(page, **params)
        s = self.session
        self.wavelength = grid.wavelength_grid()
        self.figures = InspectorFigures(self.wavelength)
        self.controls = InspectionControls(page)
        self.smoothing = pn.widgets.IntSlider(label="smoothing (channels, inverse-variance weighted)", start=1,
                                              end=25, value=DEFAULT_SMOOTHING, width=300)
        self.masked_style = pn.widgets.RadioButtonGroup(label="masked channels", options=list(MASKED_STYLES),
                                                        value=MASKED_STYLES[0], css_classes=["mtopnet-masked-style"])
        self.show_sky = pn.widgets.Checkbox(label="sky", value=True)
        self.show_error = pn.widgets.Checkbox(label="error", value=True)
        self.mc_text = pn.pane.Markdown("")
        self.mc_button = pn.widgets.Button(label=f"MC-dropout spread ({APP_MC_PASSES} passes)")
        self.mc_button.on_click(self._mc_dropout)
        self._reset_zoom = True  # the next drawing shows the whole spectrum
        s.param.watch(lambda *_: setattr(self.mc_text, "object", ""), "current")
        s.param.watch(self._draw_inspector, ["current", "display_z", "catalogue_version"])
        self.smoothing.param.watch(self._draw_inspector, "value_throttled")
        self.masked_style.param.watch(self._draw_inspector, "value")
        for box in (self.show_sky, self.show_error):
            box.param.watch(lambda *_: self.figures.set_visible(self.show_error.value, self.show_sky.value), "value")
        self.solutions = self._solutions_view()
        self._draw_inspector()

    def _draw_inspector(self, *events) -> None:
        """Redraw the inspector's figures for the current object, solution and smoothing.

        The spectrum is read and its layers computed in a background thread (~0.1 s); the figures
        change on the event loop once that is done, unless the page has asked for another object,
        solution or smoothing meanwhile (then only the newest request is drawn). The saliency map
        (a network gradient: the first one of a server waits for TensorFlow, ~10 s) is taken in a
        second background step, so the spectrum never waits for it.
        """
        s = self.session
        self._reset_zoom |= not events or any(e.name in ("current", "catalogue_version") for e in events)

        def requested() -> tuple:
            return s.current, s.display_z, self.smoothing.value, self.masked_style.value

        wanted = requested()
        try:
            row = s.current_row()
        except KeyError as exc:
            self.figures.clear(str(exc).strip(QUOTES))
            return
        z_peak = float(row["z_peak"])
        z_true = None if row.get("z_true") is None or pd.isna(row.get("z_true")) else float(row["z_true"])
        data, sky_threshold = s.data, s.data.model.preprocessing.sky_threshold

        def still_wanted(compared: int = len(wanted)) -> bool:
            return requested()[:compared] == wanted[:compared]

        def prepare() -> tuple[InspectedObject, SpectrumLayers] | str:
            try:
                spectrum = data.spectrum(wanted[0])
            except KeyError as exc:
                return str(exc).strip(QUOTES)
            return spectrum, spectrum_layers(spectrum, self.wavelength, sky_threshold, wanted[2], wanted[3])

        @batched
        def draw(prepared) -> None:
            if not still_wanted():
                return  # a newer request is on its way
            if isinstance(prepared, str):
                self.figures.clear(prepared)
                return
            spectrum, layers = prepared
            self.figures.show(wanted[0], spectrum, layers, z_peak, z_true, wanted[1], self._reset_zoom)
            self._reset_zoom = False
            if np.isfinite(z_peak):
                z_bin = None if wanted[1] is None else int(grid.redshift_to_bin(wanted[1]))
                self.page.in_background(lambda: data.saliency(spectrum, z_bin), draw_saliency, "the saliency map",
                                        needs_keras=True)

        @batched
        def draw_saliency(saliency: np.ndarray) -> None:
            if still_wanted(2):  # the same object and solution (the map does not depend on the smoothing)
                self.figures.show_saliency(wanted[0], wanted[1], saliency)

        self.page.in_background(prepare, draw, "drawing the spectrum")

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

        choice.param.watch(batched(choose), "value")
        s.param.watch(show, ["current", "display_z", "catalogue_version"])
        show()
        return pn.Column("**Solutions** (click to draw the lines there; key `a` cycles)", choice, listing)

    def _properties(self, current, version) -> str:
        s = self.session
        try:
            row = s.current_row()
        except KeyError as exc:
            return f"<b>{escape(str(exc).strip(QUOTES))}</b>"

        def value(name: str, fmt: str = ".3f") -> str:
            """One value as the page shows it: a dash for anything missing (NaN, None, an empty text)."""
            v = row.get(name)
            if v is None or (not isinstance(v, str) and pd.isna(v)) or (isinstance(v, str) and not v.strip()):
                return "–"
            return escape(format(v, fmt) if not isinstance(v, str) else v)

        text = [f"<h3>{escape(current)}</h3>",
                f"z peak <b>{value('z_peak', '.4f')}</b> · truth {value('z_true', '.4f')} · Δz {value('dz', '+.4f')}",
                f"entropy {value('entropy', '.2f')} · skewness {value('skewness', '.1f')} · "
                f"PDF width {value('pdf_width', '.4f')} · p(|dz|<{PEAK_WINDOW_DZ:g}) {value('p_within_0p01', '.2f')}",
                f"log M* {value('log_mstar_pred', '.2f')} (truth {value('log_mstar_true', '.2f')}) · "
                f"log SFR {value('log_sfr_pred', '.2f')} (truth {value('log_sfr_true', '.2f')})",
                f"m_H {value('m_h', '.2f')} · t_exp {value('t_exp_h', 'g')} h · class {value('galaxy_class', '')}"]
        if value("problem") != "–":
            text.append(f"<b>not processed:</b> {value('problem')}")
        if value("flags") != "–":
            text.append(f"<b>outside the model's training domain:</b> {value('flags')}")
        record = s.inspections.get(current)
        text.append(f"inspection: <b>{QUALITY_FLAGS[record.quality]}</b>"
                    + (f" · marks {record.issues}" if record.issues else "")
                    + (f" · z corrected {record.z_corrected:.4f}" if record.z_corrected is not None else "")
                    + (f" · by {escape(record.inspector)}" if record.inspector else "")
                    + (f" · comment: “{escape(record.comment)}”" if record.comment else ""))
        return text[0] + "".join(f"<p>{line}</p>" for line in text[1:])

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

        # without the heads in NumPy (a model never exported) every pass runs the Keras network
        self.page.in_background(lambda: s.data.mc_dropout(spectrum, APP_MC_PASSES), show, "MC dropout",
                                needs_keras=s.data.model.mc_heads is None)

    def __panel__(self) -> pn.viewable.Viewable:
        s, figures = self.session, self.figures
        return pn.Column(
            self.controls,
            # HTML written here, not Markdown: the server renders no Markdown on every object
            pn.Row(pn.Column(pn.pane.HTML(pn.bind(self._properties, current=s.param.current,
                                                  version=s.param.inspection_version),
                                          css_classes=["mtopnet-properties"]), self.mc_button, self.mc_text,
                             width=460),
                   self.solutions,
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

