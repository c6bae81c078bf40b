"""Screenshots of the app for the README (``docs/screenshots/overview.png``, ``inspector.png``).

Usage::

    python scripts/screenshots.py --results RESULTS_DIR [--model MODEL_DIR] [--out docs/screenshots]

Serves the app in this process and photographs it with the system Chromium: the overview tab,
then the inspector on the next failed redshift of the queue (key `n`).
"""

from __future__ import annotations

import argparse
import logging
import socket
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

logger = logging.getLogger("screenshots")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import panel as pn

    from app.main import build_page

    argv = ["--results", str(args.results), "--data-dir", tempfile.mkdtemp(prefix="screenshots-")]
    if args.model is not None:
        argv += ["--model", str(args.model)]
    port = _port()
    server = pn.serve(lambda: build_page(argv), port=port, address="127.0.0.1", threaded=True, show=False)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1600, "height": 1250})
            page.goto(f"http://127.0.0.1:{port}/", timeout=300_000)
            page.wait_for_selector(".mtopnet-table .tabulator-row", timeout=300_000)
            page.wait_for_selector(".mtopnet-embedding canvas", timeout=300_000)
            time.sleep(3)
            page.screenshot(path=str(args.out / "overview.png"))
            page.keyboard.press("n")  # the next failed redshift of the queue
            time.sleep(2)
            page.get_by_text("Inspector", exact=True).first.click()
            time.sleep(4)
            page.screenshot(path=str(args.out / "inspector.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    logger.info("screenshots in %s", args.out)


if __name__ == "__main__":
    main()
