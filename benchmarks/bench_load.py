"""The app under a team's load: several browser sessions tapping the map and moving sliders at once.

Usage::

    python benchmarks/bench_load.py --results RESULTS_DIR --model MODEL_DIR [--sessions 8] [--seconds 120]
        [--think 0.2 1.0]

Serves the app in this process (as ``panel serve`` does) and opens ``--sessions`` pages in the
system Chromium, each in its own browser context. Every session, at the same time as the others,
repeats for ``--seconds``: a tap on a random object's point in the map, timed inside the page from
the pointer going down until the caption of the inspector's spectrum names the object, which it
does once the spectrum, its saliency map, PDF and insets are drawn (tap to inspector; the page
checks every 20 ms, so the benchmark's own polling does not compete for the CPU), then, every
third round, a move of the entropy slider, then a pause of ``--think`` seconds (uniform between
the two values) while the person looks at what came.

It reports the median and 90th-percentile tap-to-inspector time; the server's own share: the
event loop (which serves every session) held by the tap's callbacks and by drawing the object,
and the time from the tap's arrival to the object drawn and sent, which includes the spectrum's
reading and saliency map in background threads; the slider moves done; the console and page
errors with the addresses of failed requests; the CPU time of the server and of the browsers
(from /proc, before the pages close); and the server's resident memory sampled every second
(start, peak, end). Requests are sent to 127.0.0.1 only, and the run ends by itself.

The browsers share the machine's cores with the server, so on a small machine the tap time is
mostly the eight pages' own rendering: the server's share says what a team would see with their
browsers on their own computers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the app folder and the browser helpers: neither is installed
from headless import CHROMIUM, CHROMIUM_ARGS, DEEP_TEXT_JS, MAP_POINT_JS, served  # noqa: E402


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _browsers_cpu_seconds() -> float:
    """CPU time of every Chromium process now running (the kernel's count, which getrusage's
    RUSAGE_CHILDREN misses: Chromium's processes are not this process's waited-for children)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, rest = stat.read_text().split("(", 1)[1].rsplit(")", 1)
            if "chrom" in name:  # fields 14 and 15 of /proc/PID/stat: user and system time, in ticks
                total += sum(int(ticks) for ticks in rest.split()[11:13]) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            continue
    return total


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


TAP_TIMER_JS = """(id) => new Promise((resolve) => {
  const deepText = DEEP_TEXT_JS;
  const find = (root) => {  // Panel draws its panes inside shadow roots
    const hit = root.querySelector('.mtopnet-spectrum-caption');
    if (hit) return hit;
    for (const element of root.querySelectorAll('*')) {
      const inner = element.shadowRoot && find(element.shadowRoot);
      if (inner) return inner;
    }
    return null;
  };
  const pane = find(document);
  const give_up = performance.now() + 30000;
  const check = () => {
    if (window.tapStart !== null && pane && deepText(pane).includes(id)) {
      requestAnimationFrame(() => resolve((performance.now() - window.tapStart) / 1000));
    } else if (performance.now() > give_up) {
      resolve(null);
    } else {
      setTimeout(check, 20);
    }
  };
  check();
})""".replace("DEEP_TEXT_JS", DEEP_TEXT_JS)
"""Seconds from the pointer-down noted by ARM_TAP_TIMER_JS until the spectrum's caption names ``id``
and a frame is painted."""
ARM_TAP_TIMER_JS = """() => {
  window.tapStart = null;
  document.addEventListener('pointerdown', () => { window.tapStart = performance.now(); }, {once: true, capture: true});
}"""
"""Note the time of the next pointer-down in the page."""


async def _session(browser, url: str, ids: list[str], seconds: float, think: tuple[float, float], seed: int,
                   record: dict, all_loaded: asyncio.Barrier) -> None:
    page = await browser.new_page(viewport={"width": 1600, "height": 1300})
    page.on("console", lambda m: record["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: record["errors"].append(str(e)))
    page.on("requestfailed", lambda r: record["failed_requests"].append(f"{r.url} ({r.failure})"))
    await page.goto(url, timeout=300_000)
    await page.wait_for_selector(".mtopnet-embedding canvas", timeout=300_000)
    await page.wait_for_selector(".mtopnet-table .tabulator-row", timeout=300_000)
    record["loaded"].append(time.perf_counter() - record["start"])
    await all_loaded.wait()  # the timed work starts when every page is there, not beside their loading
    chooser = random.Random(seed)
    await asyncio.sleep(chooser.uniform(0.0, 2.0))  # people do not click in step
    end, rounds = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        rounds += 1
        object_id = chooser.choice(ids)
        position = await page.evaluate(MAP_POINT_JS, object_id)
        if position is not None:
            await page.evaluate(ARM_TAP_TIMER_JS)
            await page.mouse.click(*position)
            seconds = await page.evaluate(TAP_TIMER_JS, object_id)
            if seconds is None:
                record["lost"] += 1
            else:
                record["taps"].append(seconds)
        if rounds % 3 == 0:
            await page.locator(".noUi-handle").first.focus()
            await page.keyboard.press("End" if rounds % 2 else "Home")
            record["slider_moves"] += 1
        await asyncio.sleep(chooser.uniform(*think))  # a person looks at what came


async def _run(url: str, ids: list[str], sessions: int, seconds: float, think: tuple[float, float]) -> dict:
    record = {"taps": [], "errors": [], "failed_requests": [], "lost": 0, "slider_moves": 0, "loaded": []}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        all_loaded = asyncio.Barrier(sessions)
        record["start"] = time.perf_counter()
        await asyncio.gather(*[_session(browser, url, ids, seconds, think, seed, record, all_loaded)
                               for seed in range(sessions)])
        record["browsers_cpu"] = _browsers_cpu_seconds()  # before the pages' processes end
        await browser.close()
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--think", type=float, nargs=2, default=(0.2, 1.0), metavar=("MIN", "MAX"),
                        help="seconds each person looks at an object before the next action (uniform)")
    args = parser.parse_args()
    from mtopnet_core.results import open_results

    catalogue = open_results(args.results).catalogue
    ids = catalogue.loc[catalogue[["umap_x", "umap_y"]].notna().all(axis=1), "object_id"].astype(str).tolist()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    argv = ["--results", str(args.results), "--model", str(args.model), "--data-dir", str(data_dir)]
    memory, stop = [], threading.Event()
    server_taps: list[float] = []
    server_draws: list[float] = []
    from app.map_view import EmbeddingMap
    from app.page import Page

    def timed(method, times: list[float]):
        def run(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                times.append(time.perf_counter() - start)
        return run

    tapped_at: dict[int, float] = {}
    server_spans: list[float] = []
    untimed_tap = timed(EmbeddingMap._on_map_tap, server_taps)

    def tap(self, *args, **kwargs):
        tapped_at[id(self.session)] = time.perf_counter()
        return untimed_tap(self, *args, **kwargs)

    EmbeddingMap._on_map_tap = tap
    in_background = Page.in_background

    def timed_in_background(self, work, then, what):
        if what != "drawing the spectrum":
            return in_background(self, work, then, what)

        def timed_then(result):  # the figures' update, sent to the browser on leaving it
            timed(lambda _, r: then(r), server_draws)(None, result)
            start = tapped_at.pop(id(self.session), None)
            if start is not None:
                server_spans.append(time.perf_counter() - start)
        return in_background(self, work, timed_then, what)

    Page.in_background = timed_in_background

    def sample() -> None:
        while not stop.is_set():
            memory.append(_rss_mb())
            stop.wait(1.0)

    with served(argv) as url:
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        record = asyncio.run(_run(url, ids, args.sessions, args.seconds, tuple(args.think)))
        server_cpu = _cpu_seconds(resource.RUSAGE_SELF)
        stop.set()
        sampler.join()
    browsers_cpu = record["browsers_cpu"]
    taps = np.array(record["taps"])
    print(f"results {args.results}: {len(catalogue)} objects; {args.sessions} sessions for {args.seconds:.0f} s, "
          f"{args.think[0]:g}-{args.think[1]:g} s between actions")
    print("| measure | value |\n|---|---|")
    print(f"| all pages opened at once: the last one ready after | {max(record['loaded']):.1f} s |")
    print(f"| taps answered / lost (no inspector within 30 s) | {taps.size} / {record['lost']} |")
    if taps.size:
        print(f"| tap to inspector, median / 90th percentile | {np.median(taps):.2f} s / "
              f"{np.percentile(taps, 90):.2f} s |")
    for what, times in (("the tap's callbacks", server_taps), ("drawing the object", server_draws)):
        if times:
            print(f"| the server's event loop held per tap by {what}, median / 90th percentile | "
                  f"{np.median(times):.3f} s / {np.percentile(times, 90):.3f} s |")
    if server_spans:
        print(f"| on the server, from the tap's arrival to the object drawn and sent, median / 90th percentile | "
              f"{np.median(server_spans):.3f} s / {np.percentile(server_spans, 90):.3f} s |")
    print(f"| slider moves | {record['slider_moves']} |")
    print(f"| console or page errors | {len(record['errors'])} |")
    print(f"| CPU time, loading included: the server (and this script) / the browsers | "
          f"{server_cpu:.0f} s / {browsers_cpu:.0f} s |")
    print(f"| server resident memory: start / peak / end | {memory[0]:.0f} / {max(memory):.0f} / {memory[-1]:.0f} MB |")
    print(f"| failed requests | {len(record['failed_requests'])} |")
    for error in record["errors"][:5]:
        print(f"error: {error[:200]}")
    for address in sorted(set(record["failed_requests"]))[:10]:
        print(f"failed request: {address[:200]}")


if __name__ == "__main__":
    main()
