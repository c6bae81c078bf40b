"""The app's responsiveness: start to usable page, selection to inspector, slider to figures, memory.

Usage::

    python benchmarks/bench_app.py --results RESULTS_DIR --model MODEL_DIR [--repeat 5]

Serves the app in this process (as ``panel serve`` does) and drives it with the system Chromium:

- start: from ``panel.serve`` to a page whose table and map are drawn;
- selection: a tap on a map point until the inspector names the object and its spectrum
  figure shows it (browser round trip), and the server-side work of showing one object
  (spectrum, saliency, PDF, insets, map marker, solutions, inspection controls);
- keys: `n` pressed in the inspector's tab until the next object is painted (the caption above
  the spectrum, drawn with the figures, changes);
- slider: the entropy threshold moved (End and Home keys) until the frame painted after the last
  patch of the move (browser), and the server-side recomputation of the screening figures;
- memory: resident size of the server process with the results loaded and one session open.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import holoviews as hv  # noqa: E402
import numpy as np  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the app folder and the browser helpers: neither is installed
from headless import MAP_POINT_JS, launch_chromium, open_dashboard, served, text_of  # noqa: E402

from app.session_page import session_view  # noqa: E402
from app.sources import prepare_map, results_ready  # noqa: E402
from mtopnet_core.saliency import saliency_for_spectra  # noqa: E402

CAPTION_TEXT = """() => Array.from(Bokeh.index.all_views()).map((v) => v.model).find((m) => m
    && typeof m.text === 'string' && (m.css_classes || []).includes('mtopnet-spectrum-caption')).text"""
"""The text of the caption above the inspector's spectrum, drawn with the figures: it names the
object shown. (The figure's title named it until the title became this caption; the benchmark then
waited for a title that never came.)"""


WATCH_PATCHES = """() => {
  const caption = """ + CAPTION_TEXT + """;
  const down = () => {
    window.__down = performance.now(); window.__painted = null;
    window.__before = caption(); window.__changed = null;
  };
  document.addEventListener('pointerdown', down, true);
  document.addEventListener('keydown', down, true);
  for (const doc of Bokeh.documents) {
    const apply = doc.apply_json_patch.bind(doc);
    doc.apply_json_patch = (...args) => {
      const out = apply(...args);
      requestAnimationFrame(() => { window.__painted = performance.now(); });
      if (window.__wanted && window.__shown === null && caption().includes(window.__wanted)) {
        window.__shown = undefined;
        requestAnimationFrame(() => { window.__shown = performance.now(); });
      }
      if (window.__changed === null && caption() !== window.__before) {
        window.__changed = undefined;
        requestAnimationFrame(() => { window.__changed = performance.now(); });
      }
      return out;
    };
  }
}"""
"""Records when the patch that shows ``window.__wanted`` in the spectrum figure has been painted
(``__shown``), when the first patch that changes the spectrum's caption since the latest pointer
or key press has been (``__changed``: the next object drawn), and when the last patch since that
press has been (``__painted``)."""


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-app-"))
    argv = ["--results", str(args.results), "--model", str(args.model), "--data-dir", str(data_dir)]
    hv.extension("bokeh")

    # the UMAP map first, as the served app fits it before its first page: the process-wide data
    # (shared with the server below, which runs in this process) must not be loaded without it
    if not results_ready(args.results, data_dir):
        start = time.perf_counter()
        prepare_map(args.results, data_dir)
        print(f"UMAP map fitted in {time.perf_counter() - start:.1f} s (not in the timings below)", file=sys.stderr)
    # server-side timings on a session of our own
    dashboard = session_view(args.results, args.model, data_dir)
    session = dashboard.session
    ids = session.data.catalogue["object_id"].astype(str).tolist()
    n_objects = len(ids)
    inspector, slider, saliency = [], [], []
    # the views wired themselves to the session when made: they redraw on a new object or threshold
    for object_id in ids[1:args.repeat + 1]:
        start = time.perf_counter()
        session.current = object_id  # read; figures, map marker, solutions, inspection controls
        dashboard.inspector._properties(object_id, 0)
        inspector.append(time.perf_counter() - start)
        spectrum = session.data.spectrum(object_id)
        start = time.perf_counter()  # the gradient alone (the app keeps the last one)
        saliency_for_spectra(session.data.model, spectrum.spectrum, bins=np.array([int(np.argmax(spectrum.pdf))]))
        saliency.append(time.perf_counter() - start)
    for value in np.linspace(1.0, 4.0, args.repeat):
        start = time.perf_counter()
        session.entropy_max = float(value)  # moves the threshold lines and the curve's point
        dashboard.screening._numbers(value, 20.0, True, False, True, 0.01, 0)  # the accuracy table
        slider.append(time.perf_counter() - start)

    start = time.perf_counter()
    with served(argv) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        page, _ = open_dashboard(browser, url, timeout_s=300)
        usable = time.perf_counter() - start
        memory = _rss_mb()
        # timed in the page: from the pointer going down to the first frame painted after the patch
        # that shows the object (polling the page from here would compete with it for the CPU)
        page.evaluate(WATCH_PATCHES)
        taps, missed = [], []
        for object_id in ids[-args.repeat:]:
            position = page.evaluate(MAP_POINT_JS, object_id)
            if position is None:
                missed.append(f"{object_id}: not on the map")
                continue
            page.evaluate("(id) => { window.__wanted = id; window.__shown = null; }", object_id)
            page.mouse.click(*position)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 30 and page.evaluate("() => window.__shown") is None:
                time.sleep(0.05)
            shown = page.evaluate("() => window.__shown")
            if not isinstance(shown, float | int):
                missed.append(f"{object_id}: never shown in the spectrum's caption")
            elif object_id not in text_of(page, ".mtopnet-properties"):
                missed.append(f"{object_id}: not in the properties")
            else:
                taps.append(page.evaluate("() => (window.__shown - window.__down) / 1000"))
        for reason in missed:  # a tap that was not timed is said, never silently dropped
            print(f"tap not timed: {reason}", file=sys.stderr)
        # the entropy slider moved by keys, each move timed in the page from the key going down to
        # the frame painted after the last patch it caused (accuracy table, threshold line, curve point)
        page.locator(".noUi-handle").first.focus()
        slider_moves = []
        for key in ["End", "Home"] * ((args.repeat + 1) // 2):
            before = text_of(page, ".mtopnet-accuracy")
            page.keyboard.press(key)
            time.sleep(1.0)  # every patch of this move has arrived and been painted
            if text_of(page, ".mtopnet-accuracy") != before:
                slider_moves.append(page.evaluate("() => (window.__painted - window.__down) / 1000"))
        # keys in the inspector's tab: `n` (next in the queue), timed in the page from the key going
        # down to the frame painted after the patch that draws the next object
        page.get_by_text("Inspector", exact=True).click()
        time.sleep(2.0)
        steps = []
        for _ in range(args.repeat):
            page.keyboard.press("n")
            t0, changed = time.perf_counter(), None
            while time.perf_counter() - t0 < 30 and not isinstance(changed, float | int):
                time.sleep(0.05)
                changed = page.evaluate("() => window.__changed")
            if isinstance(changed, float | int):
                steps.append((changed - page.evaluate("() => window.__down")) / 1000)
            time.sleep(0.5)
        browser.close()

    print(f"results {args.results}: {n_objects} objects; model {args.model}")
    print("| measure | value |\n|---|---|")
    print(f"| `panel serve` start to usable page (table and map drawn) | {usable:.1f} s |")
    print(f"| map tap (pointer down) to the inspector painted with the object (browser, median of {len(taps)}) | "
          f"{np.median(taps) if taps else float('nan'):.3f} s |")
    print(f"| inspector views computed and rendered on the server (median of {len(inspector)}) | "
          f"{np.median(inspector):.2f} s |")
    print(f"| of which the saliency map (median of {len(saliency)}) | {np.median(saliency):.2f} s |")
    print(f"| entropy slider move (key) to the updated table, threshold line and curve point painted (browser, "
          f"median of {len(slider_moves)}, first {slider_moves[0] if slider_moves else float('nan'):.3f} s) | "
          f"{np.median(slider_moves) if slider_moves else float('nan'):.3f} s |")
    print(f"| key `n` in the inspector to the next object painted (browser, median of {len(steps)}) | "
          f"{np.median(steps) if steps else float('nan'):.3f} s |")
    print(f"| screening figures recomputed and rendered on the server (median of {len(slider)}) | "
          f"{np.median(slider):.3f} s |")
    print(f"| server resident memory, results loaded and sessions open | {memory:.0f} MB |")


if __name__ == "__main__":
    main()
