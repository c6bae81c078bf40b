"""Screenshots of the app for the README (``docs/screenshots/first_start.png``, ``overview.png``,
``inspector.png``).

Usage::

    python scripts/screenshots.py [--results RESULTS_DIR] [--model MODEL_DIR] [--out docs/screenshots]

Serves the app in this process and photographs it with the system Chromium: without
``--results``, the README's first command on an empty data folder, so first the page that shows
the demo's progress (``first_start.png``), then the demo; the overview tab, then the inspector on
the next failed redshift of the queue (key `n`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the app folder and the browser helpers: neither is installed
from headless import launch_chromium, open_dashboard, served  # noqa: E402

logger = logging.getLogger("screenshots")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=None, help="results folder (default: the demo)")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    argv = ["--data-dir", tempfile.mkdtemp(prefix="screenshots-")]
    if args.results is not None:
        argv += ["--results", str(args.results)]
    if args.model is not None:
        argv += ["--model", str(args.model)]
    args.out.mkdir(parents=True, exist_ok=True)
    with served(argv) as url, sync_playwright() as p:
        browser = launch_chromium(p)
        if args.results is None:  # the demo is being made: its progress first
            first = browser.new_page(viewport={"width": 1600, "height": 500})
            first.goto(url, timeout=120_000)
            first.wait_for_selector(".bk-panel-models-widgets-Progress, progress", timeout=120_000)
            time.sleep(8)  # a few steps into the demo
            first.screenshot(path=str(args.out / "first_start.png"))
            first.close()
        page, _ = open_dashboard(browser, url, height=1250, timeout_s=300)
        time.sleep(3)
        page.screenshot(path=str(args.out / "overview.png"))
        page.keyboard.press("n")  # the next failed redshift of the queue
        time.sleep(2)
        page.get_by_text("Inspector", exact=True).first.click()
        time.sleep(4)
        page.screenshot(path=str(args.out / "inspector.png"), full_page=True)
        browser.close()
    logger.info("screenshots in %s", args.out)


if __name__ == "__main__":
    main()
