"""The page each browser session gets: the dashboard of a results set, or a progress page while one is prepared.

Loaded data, the model and the UMAP map are shared by all sessions of the process; each session
has its own state and uploads. Inspections are saved in the app's data folder, one SQLite store
per results set, shared by its sessions and by other server processes on the same folder.

This is a module of its own, not part of ``main.py``: ``panel serve`` runs ``main.py`` anew for
each session and empties that run's globals when the session ends, which broke the threads and
callbacks a session had started (a ``NameError`` on ``logger`` in the log) whenever a page closed
before its data was prepared.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import panel as pn

from .config import app_config
from .demo import build_demo, demo_results

# Hotkeys and ChunkedUpload, the dashboard's custom components, are imported with this module so
# that they are defined before any page is sent: Panel sends the definition of such a component's
# data model only once per process, with the first component made for a connected page, and a
# page gets the definitions made before it was sent. Defined later, on the first dashboard, they
# were unknown to every other page already open on a progress page, which then never showed its
# dashboard ("could not resolve type 'Hotkeys1'" in the browser)
from .hotkeys import Hotkeys  # noqa: F401
from .sources import predict_for_app, prepare_map, resolve_under_roots, results_ready, source_kind
from .uploader import ChunkedUpload  # noqa: F401 - see Hotkeys above

if TYPE_CHECKING:
    from .dashboard import Dashboard
    from .data import AppData
    from .inspections import InspectionStore

__all__ = ["build_page", "session_view", "shared_data", "inspection_store_path"]

logger = logging.getLogger("mtopnet.app")

PROGRESS_POLL_MS = 250
"""How often a progress page looks at its work: the dashboard follows the prepared data within this
(at 1 s it waited 0.5 s on average; a look that finds nothing new sends nothing to the page)."""


def _model_path(config) -> Path:
    if config.model is not None:
        return config.model
    from mtopnet_core.assets import shipped_model_dir

    return shipped_model_dir()


def inspection_store_path(results: Path, data_dir: Path) -> Path:
    """The inspection store of a results folder, in the app's data folder."""
    tag = hashlib.sha1(str(results.resolve()).encode()).hexdigest()[:10]
    return data_dir / "inspections" / f"{results.name}-{tag}.sqlite"


_LOADING = threading.Lock()
"""Held while a results set's data is loaded: sessions that ask at once (two pages, a progress
page's thread and a new page) load it once."""


def shared_data(results: Path, model: Path, data_dir: Path) -> tuple[AppData, InspectionStore]:
    """The process-wide data of a results set (loaded once) and its inspection store."""
    # the data's modules are imported here, not with this file: a first start's progress
    # page is then sent ~0.6 s sooner, and the demo's build starts sooner too
    from .data import load_app_data
    from .inspections import InspectionStore
    from .sources import map_path
    key = f"mtopnet-app:{results.resolve()}:{model.resolve()}:{data_dir.resolve()}"
    with _LOADING:
        if key not in pn.state.cache:
            data = load_app_data(results, model, map_path(results, data_dir))
            data.model  # noqa: B018 - load once here, not in every session
            data.map_reference  # noqa: B018
            store = InspectionStore(inspection_store_path(results, data_dir), data.model_version)
            pn.state.cache[key] = (data, store)
    return pn.state.cache[key]


def _warm_up_keras_after_this_page(data: AppData) -> None:
    """Load the Keras model for saliency maps (predictions run on ONNX Runtime) on the thread that
    takes them (:data:`app.page.KERAS_WORK`), once the page being made has been sent.

    TensorFlow's import takes seconds and holds the interpreter most of that time: started
    beside the first dashboard it delayed it by ~3 s on two AVX2 cores; started after, it is
    mostly done by a user's first look at the inspector. The model is loaded once per process
    (:attr:`~mtopnet_core.inference.TrainedModel.forward`); later pages' warm-ups find it loaded.
    """
    def start() -> None:
        from .page import KERAS_WORK

        KERAS_WORK.submit(lambda: data.model.forward)

    if pn.state.curdoc is not None and pn.state.loaded:  # the progress page, swapping in the dashboard
        pn.state.curdoc.add_next_tick_callback(start)
    else:
        pn.state.onload(start)  # at once when there is no page


def session_view(results: Path, model: Path, data_dir: Path, roots: tuple[Path, ...] = ()) -> Dashboard:
    """A dashboard with fresh per-session state over the shared data; its page may open folders under ``roots``."""
    from .dashboard import Dashboard
    from .state import Session

    data, store = shared_data(results, model, data_dir)
    _warm_up_keras_after_this_page(data)
    return Dashboard(Session(data.for_session(), store), roots=roots)


def _progress_page(intro: str, work: Callable[[Callable[[str, float], None]], Path], model: Path,
                   data_dir: Path, roots: tuple[Path, ...]) -> pn.viewable.Viewable:
    """Progress while ``work(report)`` prepares a results folder (in a thread), then the dashboard."""
    status = pn.pane.Markdown(intro)
    bar = pn.indicators.Progress(value=0, max=100, width=400)
    page = pn.Column(status, bar)
    progress = {"text": "starting", "fraction": 0.0, "results": None, "error": None}

    def run():
        started = time.perf_counter()
        try:
            results = work(lambda text, fraction: progress.update(text=text, fraction=fraction))
            # loaded here, not on the event loop that serves every session: a model without an
            # ONNX export brings TensorFlow (~7 s), the shipped one ~1 s of reading
            shared_data(results, model, data_dir)
            progress["results"] = results
        except Exception as exc:  # noqa: BLE001 - shown on the page, never a traceback
            logger.exception("preparing the data failed")
            progress["error"] = str(exc)
        else:
            logger.info("%s prepared in %.1f s", progress["results"], time.perf_counter() - started)

    threading.Thread(target=run, daemon=True).start()

    def poll():
        if progress["error"]:
            status.object = f"**The data could not be prepared:** {progress['error']}"
            callback.stop()
        elif progress["results"] is not None and pn.state.loaded:
            # only for a page that is open: a session whose page never connected (a link preview,
            # a retried request) would build a dashboard, and load its model on the event loop, for nobody
            callback.stop()
            started = time.perf_counter()
            try:
                page.objects = [session_view(progress["results"], model, data_dir, roots)]
                logger.info("dashboard of %s built in %.1f s", progress["results"], time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - said on the page; before, it stayed on "ready" for good
                logger.exception("opening the prepared data failed")
                status.object = f"**The data could not be opened:** {exc}"
        else:
            status.object = f"{intro.split(': ')[0]}: {progress['text']}…"
            bar.value = int(100 * progress["fraction"])

    callback = pn.state.add_periodic_callback(poll, period=PROGRESS_POLL_MS)
    return page


def _results_page(results: Path, model: Path, data_dir: Path, roots: tuple[Path, ...]) -> pn.viewable.Viewable:
    """A results folder's dashboard; its UMAP map is fitted first (into the app's data folder) if it has none."""
    if results_ready(results, data_dir):
        return session_view(results, model, data_dir, roots)
    return _progress_page(f"Preparing {results.name}: its embedding map (first opening only).",
                          lambda report: prepare_map(results, data_dir, report), model, data_dir, roots)


def _opened_page(requested: str, config) -> pn.viewable.Viewable:
    """The page for ``?open=PATH``: a results folder or a store (predicted first, once), under the roots only."""
    model, data_dir = _model_path(config), config.data_dir
    path = resolve_under_roots(requested, config.roots)
    if source_kind(path) == "store":
        return _progress_page(f"Preparing {path.name}: predicting its spectra with the model (first opening only).",
                              lambda report: predict_for_app(path, data_dir, model, report), model, data_dir,
                              config.roots)
    return _results_page(path, model, data_dir, config.roots)


def _styles_from_this_server() -> None:
    """Point the session's style sheets at this server, never at Panel's CDN: the app must work offline.

    Panel addresses a new model's style sheets by the document's ``dist_url``, which it sets only
    when the page is first rendered, after the models were made; the rest keep the CDN address
    until a patch at render time. With several pages loading at once some missed that patch
    (hundreds of "net::ERR_NAME_NOT_RESOLVED" for cdn.holoviz.org in benchmarks/bench_load.py).
    """
    document = pn.state.curdoc
    if document is not None and document.session_context is not None:
        from panel.io.resources import LOCAL_DIST

        local = f"{pn.state.rel_path}/{LOCAL_DIST}" if pn.state.rel_path else LOCAL_DIST
        document._template_variables.setdefault("dist_url", local)


def build_page(argv: list[str] | None = None) -> pn.viewable.Viewable:
    """The page for one session."""
    _styles_from_this_server()
    config = app_config(argv)
    try:
        model = _model_path(config)
        requested = pn.state.session_args.get("open") if pn.state.curdoc is not None else None
        if requested:
            body = _opened_page(requested[0].decode(errors="replace"), config)
        elif config.results is not None:
            body = _results_page(config.results, model, config.data_dir, config.roots)
        elif results_ready(demo_results(config.data_dir, model)):
            body = session_view(demo_results(config.data_dir, model), model, config.data_dir, config.roots)
        else:
            body = _progress_page("Preparing the demo: a mock MOONS test set predicted with the shipped model "
                                  "(first start only, under a minute).",
                                  lambda report: build_demo(config.data_dir, model, report), model, config.data_dir,
                                  config.roots)
    except ValueError as exc:  # a path from the page that cannot be opened: said in one line
        body = pn.pane.Alert(str(exc), alert_type="warning")
    except Exception as exc:  # noqa: BLE001 - one line on the page instead of a traceback
        logger.exception("cannot open the app's data")
        body = pn.pane.Alert(f"M-TOPnet cannot start: {exc}", alert_type="danger")
    # a plain page: the templates fetch web fonts, and the app must work offline
    header = pn.pane.Markdown("## M-TOPnet: redshift PDFs, M*, SFR — inspection", styles={"color": "#0b3d91"})
    return pn.Column(header, body, sizing_mode="stretch_width")
