"""The app's first start as a new user meets it: ``panel serve app`` on an empty data folder.

Usage::

    python benchmarks/bench_startup.py [--data-dir EMPTY_OR_NEW_FOLDER] [--keep] [--fresh-install]

Starts the README's first command (``panel serve app --address 127.0.0.1``, here with a data
folder of its own so that the user's cache is not touched), opens the page in headless Chromium
at once, and reports (seconds from the command's start): the first answer of the server, the
progress page drawn, the dashboard usable (table rows and the map drawn), and then, after a
click on the Inspector tab, the first object's spectrum and its saliency map drawn (the first
saliency map of a server waits for TensorFlow). The demo is simulated, predicted and mapped on
that first start. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from mtopnet_core.machine import cpu_description  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the app folder and the browser helpers: neither is installed
from headless import free_port, launch_chromium, text_of  # noqa: E402


def wait_for_text(page, css: str, wanted: str, timeout_s: float = 300) -> None:
    end = time.perf_counter() + timeout_s
    while wanted not in text_of(page, css):
        if time.perf_counter() > end:
            raise RuntimeError(f"{css}: no {wanted!r} after {timeout_s} s")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="the app's data folder (default: a new one)")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    parser.add_argument("--fresh-install", action="store_true",
                        help="numba's compiled kernels not cached yet, as on the first start after `pip install` "
                             "(the server gets an empty NUMBA_CACHE_DIR)")
    parser.add_argument("--server-log", type=Path, default=None,
                        help="write the server's log here (its steps are timed in it)")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="mtopnet-startup-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}/app"
    # the log goes to a file: a pipe nobody reads would stall the server once it is full
    log = args.server_log or data_dir.with_name(data_dir.name + ".log")
    started, start = datetime.datetime.now(), time.perf_counter()
    numba_cache = tempfile.mkdtemp(prefix="mtopnet-startup-numba-") if args.fresh_install else None
    env = os.environ | ({"NUMBA_CACHE_DIR": numba_cache} if numba_cache else {})
    server = subprocess.Popen([sys.executable, "-m", "panel", "serve", "app", "--address", "127.0.0.1", "--port",
                               str(port), "--args", "--data-dir", str(data_dir)],
                              stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True, env=env)
    times = {}
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=60).read()
                times["server answers"] = time.perf_counter() - start
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"panel serve ended: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            page.wait_for_selector("text=Preparing the demo", timeout=120_000)
            times["progress page drawn"] = time.perf_counter() - start
            page.wait_for_selector(".mtopnet-table .tabulator-row", timeout=600_000)
            page.wait_for_selector(".mtopnet-embedding canvas", timeout=600_000)
            times["dashboard usable"] = time.perf_counter() - start
            page.get_by_text("Inspector", exact=True).click()
            wait_for_text(page, ".mtopnet-spectrum-caption", "lines at")
            times["inspector: the first spectrum drawn"] = time.perf_counter() - start
            wait_for_text(page, ".mtopnet-saliency-caption", "saliency |dp/dx|")
            times["inspector: its saliency map drawn"] = time.perf_counter() - start
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        if not args.keep and args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
        if numba_cache:
            shutil.rmtree(numba_cache, ignore_errors=True)
    print(f"{datetime.date.today()}: {cpu_description()}; `panel serve app` on an empty data folder"
          f"{', numba caches empty (--fresh-install)' if numba_cache else ''} "
          f"(started {started:%H:%M:%S.%f}; the server's log: {log})")
    print("| step | seconds from the command's start |\n|---|---|")
    for step, seconds in times.items():
        print(f"| {step} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
