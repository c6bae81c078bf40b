"""Serve the app in this process and drive it with the system Chromium.

One home for what the browser tests, the app benchmark and the screenshot script all do: start
the server on a free local port, launch Debian's Chromium through Playwright (its own browser
download does not work offline), open the page until the table and the map are drawn, and read
text through Panel's shadow DOM. Playwright is imported by the callers, not here.
"""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import panel as pn

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "DEEP_TEXT_JS", "free_port", "served", "launch_chromium", "open_dashboard",
           "text_of", "MAP_POINT_JS", "MAP_COLOURS_JS", "MAP_FRAME_JS", "MAP_SELECTED_JS",
           "SPECTRUM_STATE_JS", "server_threads"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

DEEP_TEXT_JS = """(element) => {
  const walk = (node) => {
    let text = node.shadowRoot ? walk(node.shadowRoot) : '';
    for (const child of node.childNodes) {
      if (child.nodeName === 'STYLE' || child.nodeName === 'SCRIPT') continue;
      text += child.nodeType === Node.TEXT_NODE ? child.textContent : walk(child);
    }
    return text;
  };
  return walk(element);
}"""

MAP_POINT_JS = """(id) => {
  for (const view of Bokeh.index.all_views()) {
    for (const r of (view.model && view.model.renderers) || []) {
      const data = r.data_source && r.data_source.data;
      if (data && data.object_id && data.umap_x) {
        const k = Array.from(data.object_id).indexOf(id);
        if (k < 0 || !isFinite(data.umap_x[k])) return null;
        const rect = view.canvas_view.el.getBoundingClientRect();
        return [rect.left + view.frame.x_scale.compute(data.umap_x[k]),
                rect.top + view.frame.y_scale.compute(data.umap_y[k])];
      }
    }
  }
  return null;
}"""
"""Page coordinates of an object's point in the embedding map (None if it is not drawn)."""

MAP_COLOURS_JS = """() => {
  for (const view of Bokeh.index.all_views()) {
    for (const r of (view.model && view.model.renderers) || []) {
      const data = r.data_source && r.data_source.data;
      if (data && data.object_id && data.umap_x && r.glyph && r.glyph.fill_color) {
        const mapper = r.glyph.fill_color.transform;
        const panels = [...view.model.right, ...view.model.center, ...view.model.left, ...view.model.below];
        return {mapper: mapper ? mapper.type : null, values: Array.from(data.colour).map(String),
                colorbar: panels.some((m) => m.type === 'ColorBar'),
                legend: panels.some((m) => m.type === 'Legend' && m.items.length > 0 && m.visible),
                title: view.model.title ? view.model.title.text : ''};
      }
    }
  }
  return null;
}"""
"""How the embedding map is coloured: its colour mapper's type, the colour values, colour bar, legend."""

_MAP_VIEW_JS = """
  for (const view of Bokeh.index.all_views()) {
    for (const r of (view.model && view.model.renderers) || []) {
      const data = r.data_source && r.data_source.data;
      if (data && data.object_id && data.umap_x) { %s }
    }
  }
  return null;
"""

MAP_FRAME_JS = "() => {" + _MAP_VIEW_JS % """
        const rect = view.canvas_view.el.getBoundingClientRect();
        return [rect.left + view.frame.bbox.left, rect.top + view.frame.bbox.top,
                view.frame.bbox.width, view.frame.bbox.height];""" + "}"
"""Page coordinates of the embedding map's plotting area: left, top, width, height."""

MAP_SELECTED_JS = "() => {" + _MAP_VIEW_JS % """
        return Array.from(r.data_source.selected.indices).map((k) => String(data.object_id[k])).sort();""" + "}"
"""IDs of the points the embedding map shows as selected, sorted."""


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served(argv: list[str]) -> Iterator[str]:
    """Serve the app (``panel serve app --args ARGV``) in a thread; yields its URL."""
    from app.main import build_page

    port = free_port()
    server = pn.serve(lambda: build_page(argv), port=port, address="127.0.0.1", threaded=True, show=False)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.stop()
        pn.state.cache.clear()


def server_threads(limit: int = 8000) -> str:
    """Where every other thread of this process is (the in-process server's, for a test that timed out)."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    stacks = [f"--- {names.get(ident, ident)}\n{''.join(traceback.format_stack(frame, limit=12))}"
              for ident, frame in sys._current_frames().items() if ident != threading.get_ident()]
    return "\n".join(stacks)[-limit:]


def launch_chromium(playwright):
    """The system Chromium, headless, through a started ``sync_playwright()``."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def open_dashboard(browser, url: str, height: int = 1300, timeout_s: float = 120):
    """Open the page and wait until the table and the map are drawn.

    ``browser`` is a Playwright browser (a fresh context, no cookies, for each page) or one
    browser context (its pages share cookies, as a person's tabs do).

    Returns
    -------
    (page, errors)
        ``errors`` collects the console errors and page exceptions from then on.

    Raises
    ------
    AssertionError
        The page did not show the dashboard in time; says what it shows instead.
    """
    if hasattr(browser, "new_context"):
        page = browser.new_page(viewport={"width": 1600, "height": height})
    else:
        page = browser.new_page()
        page.set_viewport_size({"width": 1600, "height": height})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, timeout=timeout_s * 1000)
    try:
        page.wait_for_selector(".mtopnet-table .tabulator-row", timeout=timeout_s * 1000)
        page.wait_for_selector(".mtopnet-embedding canvas", timeout=timeout_s * 1000)
    except Exception:  # noqa: BLE001 - Playwright's TimeoutError, without importing Playwright here
        raise AssertionError(f"the page did not load; it shows: {page.inner_text('body')[:500]!r}; "
                             f"console errors: {errors}") from None
    return page, errors


def text_of(page, css: str) -> str:
    """Text of the first element matching ``css``, including its shadow DOM (Panel renders in shadow roots)."""
    locator = page.locator(css).first
    return locator.evaluate(DEEP_TEXT_JS) if locator.count() else ""

SPECTRUM_STATE_JS = """() => {
  let best = null;
  for (const view of Bokeh.index.all_views()) {
    const model = view.model;
    const axis = model && model.left && model.left[0];
    if (!axis || !String(axis.axis_label).startsWith('flux')) continue;
    const legend = [...model.above, ...model.center, ...model.right].find((m) => m.type === 'Legend');
    const colours = {};
    for (const item of legend ? legend.items : []) {
      const glyph = item.renderers[0].glyph;
      const colour = glyph.line_color ?? glyph.fill_color;
      colours[item.label.value] = colour && typeof colour === 'object' ? colour.value : colour;
    }
    let flux = null;
    for (const r of model.renderers) {
      if (r.data_source && r.data_source.data.masked_flux) flux = r.data_source.data;
    }
    const finite = (name) => flux ? Array.from(flux[name]).filter((v) => Number.isFinite(v)).length : -1;
    const state = {legend_above: model.above.includes(legend), colours: colours, flux: finite('flux'),
                   masked_flux: finite('masked_flux'), ylim: [model.y_range.start, model.y_range.end]};
    if (!best || state.flux > best.flux) best = state;  // a page may hold an older view of the figure
  }
  return best;
}"""
"""The spectrum figure as the page has it: where its legend is, each legend entry's colour, how
many channels of the flux and of the dimmed masked flux are drawn, and its y-range."""
