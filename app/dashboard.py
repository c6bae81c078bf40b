"""The dashboard: one page per browser session, composed of small views over one session.

The views (:class:`~app.map_view.EmbeddingMap`, :class:`~app.table_view.CatalogueTable`,
:class:`~app.screening_view.Screening`, :class:`~app.inspector_view.Inspector` with its
:class:`~app.inspection_view.InspectionControls`) each wire themselves to the page's session in
their own ``__init__``; a change anywhere (a point picked in the map, a row clicked, a key
pressed, a slider moved) redraws what depends on it. This module adds what belongs to the whole
page: the message line, the help, the keys, uploads, opening other data, and exports.
"""

from __future__ import annotations

import io
import logging
import tempfile
from html import escape
from pathlib import Path

import pandas as pd
import panel as pn

from .data import MAX_UPLOAD_BYTES
from .hotkeys import KEYS, Hotkeys
from .inspections import ISSUE_MARKS
from .inspector_view import Inspector
from .map_view import COLOUR_CHOICES, EmbeddingMap
from .page import Page, batched
from .screening_view import Screening
from .sources import resolve_under_roots, source_kind
from .state import Session
from .table_view import TABLE_COLUMNS, CatalogueTable
from .uploader import ChunkedUpload

__all__ = ["Dashboard", "COLOUR_CHOICES", "TABLE_COLUMNS"]

logger = logging.getLogger(__name__)

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
        self.session = session
        self.roots = roots
        self.page = Page(session)
        self.map_view = EmbeddingMap(self.page)
        self.table_view = CatalogueTable(self.page)
        self.screening = Screening(self.page)
        self.inspector = Inspector(self.page)
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
        self.uploader = ChunkedUpload(max_bytes=MAX_UPLOAD_BYTES, css_classes=["mtopnet-upload"])
        self.uploader.param.watch(self._on_upload, "value")

    @batched
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
            self.page.notify(str(exc), "warning")

    def _on_upload(self, event) -> None:
        """Predict the files just dropped, in the background; name the ones refused on the way."""
        files, refused = dict(event.new or {}), list(self.uploader.refused)
        if not files:
            self.page.notify(" · ".join(refused), "danger")
            return
        self.page.notify(f"reading and predicting {len(files)} file(s)…", "info")
        self.page.in_background(lambda: self.session.data.add_fits(files),
                                lambda report: self._show_upload(report, refused), "the upload")

    def _show_upload(self, report, refused: list[str] | tuple[str, ...] = ()) -> None:
        problems = [*refused, *report.problems]
        if report.added:
            self.session.catalogue_version += 1
            self.session.current = report.added[-1]
        text = []
        if report.added:
            text.append(f"added {len(report.added)} spectra: {', '.join(report.added[:5])}")
        text += problems
        self.page.notify(" · ".join(text), "danger" if problems and not report.added else
                         "warning" if problems else "success")

    def _on_open(self, event) -> None:
        """Open another results folder or data set under the roots: the page reloads with ``?open=PATH``."""
        text = self.open_path.value.strip()
        try:
            path = resolve_under_roots(text, self.roots)
            kind = source_kind(path)
        except ValueError as exc:
            self.page.notify(str(exc), "warning")
            return
        self.page.notify(f"opening {path.name} ({'predicting it first' if kind == 'store' else 'results'})…", "info")
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
        overview = pn.Row(self.map_view, self.table_view, sizing_mode="stretch_width")
        source = pn.pane.Markdown(pn.bind(self._source_line, version=self.session.param.catalogue_version),
                                  css_classes=["mtopnet-source"])
        page = pn.Column(
            source, self.page.message, self.help, self.hotkeys,
            pn.Row(self.export_view(), self.uploader, self.open_path, self.open_button, pn.layout.HSpacer(),
                   self.help_button, sizing_mode="stretch_width"),
            pn.Tabs(("Overview", pn.Column(overview, self.screening, sizing_mode="stretch_width")),
                    ("Inspector", self.inspector), dynamic=False, sizing_mode="stretch_width"),
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
