"""The embedding map (UMAP of the latent space): colourings, taps, box and lasso selection."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
from bokeh.events import DoubleTap, Tap
from bokeh.models import ColumnDataSource

from .inspector import COLOURS
from .page import Page, PageView, add_scatter, batched

__all__ = ["EmbeddingMap", "COLOUR_CHOICES"]

COLOUR_CHOICES = {
    "redshift (true)": "z_true", "redshift (predicted)": "z_peak", "log M* (true)": "log_mstar_true",
    "log M* (predicted)": "log_mstar_pred", "log SFR (true)": "log_sfr_true", "log SFR (predicted)": "log_sfr_pred",
    "H-alpha flux (log)": "log_flux_halpha", "class": "galaxy_class", "success": "success", "entropy": "entropy",
}


class EmbeddingMap(PageView):
    """The map, the colouring chosen above it, and the current object's cross on it."""

    def __init__(self, page: Page, **params) -> None:
        super().__init__(page, **params)
        self.colour = pn.widgets.Select(label="colour the map by", options=list(COLOUR_CHOICES), value="success",
                                        css_classes=["mtopnet-colour"])
        self._marker = ColumnDataSource({"x": [], "y": []})
        self._map_ids: list[str] = []
        self._map_xy = np.empty((0, 2))
        self._map_source: ColumnDataSource | None = None
        self._selection_stream: hv.streams.Selection1D | None = None
        self._tap_figures: set[str] = set()
        self.session.param.watch(self._move_current_marker, ["current", "catalogue_version"])
        self.session.param.watch(self._show_selection_on_map, "selection")
        self._move_current_marker()

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.colour, pn.panel(pn.bind(self._embedding_plot, self.colour)), width=560)

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
                           hooks=[lambda plot, element: add_scatter(
                               plot, self._marker, marker="x", size=18, color=COLOURS["current"], line_width=3,
                               level="overlay"),
                                  self._wire_map], **style)

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
            # Bokeh turns a second tap within its double-tap interval into a DoubleTap alone, even
            # on another point: clicking quickly through points lost every other one
            for event_type in (Tap, DoubleTap):
                figure.on_event(event_type, lambda event: self._on_map_tap(event.x, event.y))

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

    @batched
    def _on_map_tap(self, x: float | None, y: float | None) -> None:
        """Show the object nearest to a tap (data coordinates), even where points overlap."""
        if x is None or y is None:
            return
        if len(self._map_ids):
            distance = np.hypot(self._map_xy[:, 0] - x, self._map_xy[:, 1] - y)
            self.session.current = self._map_ids[int(np.nanargmin(distance))]

    @batched
    def _on_map_selection(self, event) -> None:
        ids = [self._map_ids[i] for i in event.new if i < len(self._map_ids)]
        self.session.select(ids)
        if len(ids) > 1:
            self.session.queue_kind = "selection"

