"""What the dashboard's views share within one page: the session, its message line, background work.

Each view (:mod:`app.table_view`, :mod:`app.map_view`, :mod:`app.screening_view`,
:mod:`app.inspection_view`, :mod:`app.inspector_view`) takes one :class:`Page` and wires itself to
the page's session in its own ``__init__``; the dashboard (:mod:`app.dashboard`) composes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import panel as pn
from bokeh.models import ColumnDataSource

from .state import Session

__all__ = ["KERAS_WORK", "Page", "PageView", "PromptFloatSlider", "batched", "add_scatter", "add_layout"]

logger = logging.getLogger(__name__)

_BACKGROUND = ThreadPoolExecutor(max_workers=2, thread_name_prefix="mtopnet-background")
"""Threads for the heavy requests of every session (TensorFlow and NumPy release the GIL)."""
KERAS_WORK = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtopnet-keras")
"""A thread for the work that needs the Keras model (its loading, saliency maps): the first such
request of a server waits ~10 s for TensorFlow, and must not hold the threads that draw spectra
meanwhile."""
SLOW_WORK_S = 5.0
"""Background work that takes longer than this (queueing included) is logged with its time."""


def batched(callback):
    """Run a callback with the page's updates held, so that they reach the browser as one message.

    Only for callbacks that update widgets and the inspector's figures in place: with an upload
    (which re-renders the HoloViews plots) held this way, the page never showed the result
    (Panel 1.9.4).
    """
    def run(*args, **kwargs):
        with pn.io.hold():
            return callback(*args, **kwargs)
    return run


class PromptFloatSlider(pn.widgets.FloatSlider):
    """A FloatSlider whose moves the server handles at once.

    Panel waits 50 ms (``Syncable._debounce``) after a property change from the page before it
    handles it, to gather changes that arrive together; a slider move sends its value alone, and
    that wait was half of the 0.1 s from a move to the screening figures painted. With no wait the
    change is still handled in a timeout callback of the document, under its lock, so watchers
    may update Bokeh models in place (``_priority_changes``, the other way Panel offers, runs them
    without the lock, and Bokeh refuses).
    """

    _debounce = 0


def add_scatter(plot, source: ColumnDataSource, **style) -> None:
    """HoloViews hook: a scatter of one of our own data sources (updated in place) on a figure, once."""
    figure = plot.state
    if not any(getattr(r, "data_source", None) is source for r in figure.renderers):
        figure.scatter("x", "y", source=source, **style)


def add_layout(plot, annotation) -> None:
    """HoloViews hook: put one of our Bokeh annotations on a figure (once)."""
    if annotation not in plot.state.center:
        plot.state.add_layout(annotation)


class Page:
    """One browser page: its session, the one-line message at its top, and background work.

    Parameters
    ----------
    session : Session
        The page's own state over the shared data.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.message = pn.pane.Alert("", alert_type="info", visible=False, sizing_mode="stretch_width",
                                     css_classes=["mtopnet-message"])

    def notify(self, text: str, kind: str = "info") -> None:
        """Show a one-line message at the top of the page (an empty text hides it)."""
        self.message.object, self.message.alert_type, self.message.visible = text, kind, bool(text)

    def in_background(self, work: Callable[[], object], then: Callable[[object], None], what: str,
                      needs_keras: bool = False) -> None:
        """Run ``work()`` in a background thread, then ``then(result)`` on the server's event loop.

        Heavy requests (uploads, MC dropout) must not hold the event loop, which serves every
        session; the page's models may only change on the loop, with the document's lock. Without
        a server (tests, notebooks) both run at once. Work asked for while the page is being made
        starts once the page has loaded: a result handed back while Bokeh was still setting up the
        session was now and then lost (the inspector's first spectrum, in the browser tests). A
        failure is logged and named on the page in one line, never shown as a traceback; work that
        ends after its page was closed is dropped with a line in the log.
        ``needs_keras`` work runs on a thread of its own (:data:`KERAS_WORK`).
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

        def on_page(callback: Callable[[], None]) -> None:
            # the page may have closed while the work ran: Bokeh has then destroyed its document
            # (no session context, no callbacks), and the result has nowhere to go
            try:
                if document.session_context is not None:
                    document.add_next_tick_callback(callback)
                    return
            except AttributeError:  # destroyed between the check and the call
                pass
            logger.info("%s finished after its page was closed; nothing to show", what)

        def finished(future) -> None:
            took = time.perf_counter() - submitted
            if took > SLOW_WORK_S:
                logger.info("%s took %.1f s (queued and run)", what, took)
            try:
                result = future.result()
            except Exception:  # noqa: BLE001 - one line on the page instead of a traceback
                logger.exception("%s failed", what)
                on_page(fail)
                return
            on_page(lambda: then(result))

        submitted = 0.0

        def submit() -> None:
            nonlocal submitted
            submitted = time.perf_counter()
            (KERAS_WORK if needs_keras else _BACKGROUND).submit(work).add_done_callback(finished)

        pn.state.onload(submit)  # at once when the page has loaded


class PageView(pn.viewable.Viewer):
    """One view of a page: it keeps the ``page`` and its ``session``, and a subclass wires itself to
    them in its own ``__init__`` (after calling this one).

    Parameters
    ----------
    page : Page
    """

    def __init__(self, page: Page, **params) -> None:
        super().__init__(**params)
        self.page, self.session = page, page.session
