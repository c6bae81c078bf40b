"""The catalogue table and the "rows where" conditions above it."""

from __future__ import annotations

import logging

import pandas as pd
import panel as pn

from .page import Page, PageView, batched

__all__ = ["CatalogueTable", "TABLE_COLUMNS"]

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ["object_id", "z_true", "z_peak", "abs_dz", "entropy", "skewness", "m_h", "t_exp_h", "galaxy_class",
                 "log_mstar_true", "log_mstar_pred", "log_sfr_true", "log_sfr_pred", "vi_quality", "coverage", "flags",
                 "problem"]


class CatalogueTable(PageView):
    """The objects of the selection (or all), and typed conditions that select them."""

    def __init__(self, page: Page, **params) -> None:
        super().__init__(page, **params)
        self.where = pn.widgets.TextInput(label="rows where (Enter)", placeholder="e.g. abs_dz >= 0.01, m_h < 24",
                                          sizing_mode="stretch_width", css_classes=["mtopnet-where"])
        self.where.param.watch(self._on_where, "value")
        self.table = self._make_table()
        # not on threshold moves: rebuilding a 20 000-row table would make the sliders sluggish
        self.session.param.watch(lambda *_: self._refresh_table(), ["selection", "catalogue_version",
                                                                    "inspection_version"])

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(self.where, self.table, sizing_mode="stretch_width")

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
        return table

    def _refresh_table(self) -> None:
        self.table.value = self._table_frame()

    @batched
    def _on_where(self, event) -> None:
        """Select the objects meeting the typed conditions (they fill the table and the queue)."""
        s, text = self.session, event.new.strip()
        try:
            ids = s.where(text) if text else []
        except ValueError as exc:
            self.page.notify(f"{exc}. The table keeps its {len(self.table.value)} rows.", "warning")
            return
        if text and not ids:
            self.page.notify(f"no objects where {text}. The table keeps its {len(self.table.value)} rows.", "warning")
            return
        s.selection = ids
        if text:
            s.queue_kind = "selection"
            self.page.notify(f"{len(ids)} objects where {text}: in the table and the inspection queue", "info")
        else:
            self.page.notify("")

    @batched
    def _on_table_click(self, event) -> None:
        try:
            self.session.current = str(self.table.value["object_id"].iloc[event.row])
        except (IndexError, KeyError):
            logger.debug("click outside the table's rows: %s", event)

