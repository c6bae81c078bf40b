"""Entry point of ``panel serve app``: opens a results set (or the demo) and serves the dashboard.

See :mod:`app.config` for the settings and :mod:`app.session_page` for what each session gets.
Uploads and MC dropout run in background threads, so that one session's heavy request does not
freeze the others.
"""

from __future__ import annotations

import logging
import sys

import holoviews as hv
import panel as pn

# relative: `panel serve app` runs this folder as a package (Bokeh's directory handler), so the
# app needs no installing and no top-level module named `app` ever lands in site-packages
from .session_page import build_page

hv.extension("bokeh")
# Canvas, not WebGL: a browser without a GPU (remote desktops, headless) emulates WebGL, and then
# every repaint of the 20 000-point map cost ~0.5 s instead of ~0.1 s (benchmarks/bench_app.py)
hv.renderer("bokeh").webgl = False
pn.extension("tabulator", notifications=True)


if __name__.startswith("bokeh_app") or __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # `panel serve` configures the root logger first (at WARNING), so basicConfig above does nothing
    # there: without these the server's log had none of the app's progress messages
    for name in ("mtopnet", "mtopnet_core", __package__ or "app"):  # the package is bokeh_app_... under serve
        logging.getLogger(name).setLevel(logging.INFO)
    build_page(sys.argv[1:]).servable(title="M-TOPnet")
