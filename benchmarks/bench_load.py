"""The app under a team's load: several browser sessions tapping the map and moving sliders at once.

Usage::

    python benchmarks/bench_load.py --results RESULTS_DIR --model MODEL_DIR [--sessions 8] [--seconds 120]

Serves the app in this process (as ``panel serve`` does) and opens ``--sessions`` pages in the
system Chromium, each in its own browser context. Every session, at the same time as the others,
repeats for ``--seconds``: a tap on a random object's point in the map, timed from the click until
its properties pane names the object (tap to inspector), then, every third round, a move of the
entropy slider. It reports the median and 90th-percentile tap-to-inspector time, the slider moves
done, the console and page errors, and the server's resident memory sampled every second (start,
peak, end). Requests are sent to 127.0.0.1 only, and the run ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

from app.headless import CHROMIUM, CHROMIUM_ARGS, DEEP_TEXT_JS, MAP_POINT_JS, served  # noqa: E402


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def _text(page, css: str) -> str:
    locator = page.locator(css).first
    return await locator.evaluate(DEEP_TEXT_JS) if await locator.count() else ""


async def _session(browser, url: str, ids: list[str], seconds: float, seed: int, record: dict) -> None:
    page = await browser.new_page(viewport={"width": 1600, "height": 1300})
    page.on("console", lambda m: record["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: record["errors"].append(str(e)))
    await page.goto(url, timeout=300_000)
    await page.wait_for_selector(".mtopnet-embedding canvas", timeout=300_000)
    await page.wait_for_selector(".mtopnet-table .tabulator-row", timeout=300_000)
    chooser = random.Random(seed)
    end, rounds = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        rounds += 1
        object_id = chooser.choice(ids)
        position = await page.evaluate(MAP_POINT_JS, object_id)
        if position is not None:
            start = time.perf_counter()
            await page.mouse.click(*position)
            while time.perf_counter() - start < 30:
                text = await _text(page, ".mtopnet-properties")
                if object_id in text:
                    record["taps"].append(time.perf_counter() - start)
                    break
                await asyncio.sleep(0.05)
            else:
                record["lost"] += 1
        if rounds % 3 == 0:
            await page.locator(".noUi-handle").first.focus()
            await page.keyboard.press("End" if rounds % 2 else "Home")
            record["slider_moves"] += 1
        await asyncio.sleep(chooser.uniform(0.2, 1.0))  # a person looks at what came
    await page.close()


async def _run(url: str, ids: list[str], sessions: int, seconds: float) -> dict:
    record = {"taps": [], "errors": [], "lost": 0, "slider_moves": 0}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        await asyncio.gather(*[_session(browser, url, ids, seconds, seed, record) for seed in range(sessions)])
        await browser.close()
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    from mtopnet_core.results import open_results

    catalogue = open_results(args.results).catalogue
    ids = catalogue.loc[catalogue[["umap_x", "umap_y"]].notna().all(axis=1), "object_id"].astype(str).tolist()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    argv = ["--results", str(args.results), "--model", str(args.model), "--data-dir", str(data_dir)]
    memory, stop = [], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            memory.append(_rss_mb())
            stop.wait(1.0)

    with served(argv) as url:
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        record = asyncio.run(_run(url, ids, args.sessions, args.seconds))
        stop.set()
        sampler.join()
    taps = np.array(record["taps"])
    print(f"results {args.results}: {len(catalogue)} objects; {args.sessions} sessions for {args.seconds:.0f} s")
    print("| measure | value |\n|---|---|")
    print(f"| taps answered / lost (no inspector within 30 s) | {taps.size} / {record['lost']} |")
    print(f"| tap to inspector, median / 90th percentile | {np.median(taps):.2f} s / {np.percentile(taps, 90):.2f} s |")
    print(f"| slider moves | {record['slider_moves']} |")
    print(f"| console or page errors | {len(record['errors'])} |")
    print(f"| server resident memory: start / peak / end | {memory[0]:.0f} / {max(memory):.0f} / {memory[-1]:.0f} MB |")
    for error in record["errors"][:5]:
        print(f"error: {error[:200]}")


if __name__ == "__main__":
    main()
