"""The served app in a real headless Chromium (Playwright driving the system browser)."""

import shutil
import socket
import time
from contextlib import contextmanager

import pytest

pytest.importorskip("panel")
playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not shutil.which(CHROMIUM):
    pytest.skip("no system Chromium (apt-get install chromium)", allow_module_level=True)

import panel as pn  # noqa: E402

from app.main import build_page  # noqa: E402
from mtopnet_core.fits_io import export_dataset_fits  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served(results, model, data_dir):
    args = ["--results", str(results), "--model", str(model), "--data-dir", str(data_dir)]
    port = free_port()
    server = pn.serve(lambda: build_page(args), port=port, address="127.0.0.1", threaded=True, show=False)
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


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def app_url(small_results, tiny_model, tmp_path_factory):
    with served(small_results, tiny_model, tmp_path_factory.mktemp("appdata")) as url:
        yield url


def open_page(browser, url):
    page = browser.new_page(viewport={"width": 1600, "height": 1300})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, timeout=120_000)
    try:
        page.wait_for_selector(".mtopnet-table .tabulator-row", timeout=60_000)
    except playwright_api.TimeoutError:
        raise AssertionError(f"the page did not load; it shows: {page.inner_text('body')[:500]!r}; "
                             f"console errors: {errors}") from None
    page.wait_for_selector(".mtopnet-embedding canvas", timeout=60_000)
    return page, errors


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


def text_of(page, css: str) -> str:
    """Text of the first element matching ``css``, including its shadow DOM (Panel renders in shadow roots)."""
    locator = page.locator(css).first
    return locator.evaluate(DEEP_TEXT_JS) if locator.count() else ""


def wait_for_text(page, css: str, wanted: str, timeout: float = 30) -> str:
    end = time.time() + timeout
    while time.time() < end:
        text = text_of(page, css)
        if wanted in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{css}: {wanted!r} not in {text_of(page, css)[:300]!r}")


MAP_POINT_JS = """(id) => {
  for (const view of Bokeh.index.all_views()) {
    const renderers = (view.model && view.model.renderers) || [];
    for (const r of renderers) {
      const data = r.data_source && r.data_source.data;
      if (data && data.object_id && data.umap_x) {
        const k = Array.from(data.object_id).indexOf(id);
        if (k < 0) return null;
        const rect = view.canvas_view.el.getBoundingClientRect();
        return [rect.left + view.frame.x_scale.compute(data.umap_x[k]),
                rect.top + view.frame.y_scale.compute(data.umap_y[k])];
      }
    }
  }
  return null;
}"""


def test_page_loads_without_console_errors(browser, app_url):
    page, errors = open_page(browser, app_url)
    time.sleep(2)
    assert page.locator(".mtopnet-table .tabulator-row").count() > 0
    assert errors == []
    page.close()


def test_tapping_a_point_in_the_map_shows_it_in_the_inspector(browser, app_url, small_results):
    from mtopnet_core.results import open_results

    target = str(open_results(small_results).catalogue["object_id"].iloc[11])
    page, errors = open_page(browser, app_url)
    position = page.evaluate(MAP_POINT_JS, target)
    assert position is not None
    page.mouse.click(*position)
    wait_for_text(page, ".mtopnet-properties", target)
    page.get_by_text("Inspector", exact=True).click()
    wait_for_text(page, ".mtopnet-current", target)
    assert errors == []
    page.close()


def test_moving_the_entropy_slider_changes_the_accuracy_figures(browser, app_url):
    page, errors = open_page(browser, app_url)
    before = wait_for_text(page, ".mtopnet-accuracy", "kept")
    handle = page.locator(".noUi-handle").first
    handle.focus()
    page.keyboard.press("End")  # the slider's maximum keeps every processed object
    end = time.time() + 30
    while text_of(page, ".mtopnet-accuracy") == before and time.time() < end:
        time.sleep(0.2)
    assert text_of(page, ".mtopnet-accuracy") != before
    assert errors == []
    page.close()


def test_keys_step_through_the_failures_and_are_ignored_while_typing(browser, app_url):
    page, errors = open_page(browser, app_url)
    page.get_by_text("Inspector", exact=True).click()
    first = wait_for_text(page, ".mtopnet-current", "current")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("n")
    end = time.time() + 30
    while text_of(page, ".mtopnet-current") == first and time.time() < end:
        time.sleep(0.2)
    second = text_of(page, ".mtopnet-current")
    assert second != first
    page.keyboard.press("b")
    wait_for_text(page, ".mtopnet-current", first.split("current")[-1].strip())
    # typing an "n" into the comment box must not step
    page.get_by_placeholder("comment (saved on Enter)").fill("n")
    page.get_by_placeholder("comment (saved on Enter)").press("n")
    time.sleep(1.5)
    assert text_of(page, ".mtopnet-current") == first
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("?")
    page.wait_for_selector(".mtopnet-help", state="visible", timeout=10_000)
    assert errors == []
    page.close()


def test_a_flag_survives_a_server_restart(browser, small_results, tiny_model, tmp_path):
    with served(small_results, tiny_model, tmp_path) as url:
        page, _ = open_page(browser, url)
        page.get_by_text("Inspector", exact=True).click()
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("4")
        wait_for_text(page, ".mtopnet-properties", "4 secure")
        current = text_of(page, ".mtopnet-current").split("current")[-1].strip()
        page.close()
    assert list(tmp_path.glob("inspections/*.json"))
    with served(small_results, tiny_model, tmp_path) as url:
        page, _ = open_page(browser, url)
        assert current in text_of(page, ".mtopnet-current")
        wait_for_text(page, ".mtopnet-properties", "4 secure")
        page.close()


def test_uploads_good_and_corrupt_fits(browser, app_url, small_survey, tmp_path):
    good = export_dataset_fits(small_survey, tmp_path / "fits", first=1)[0]
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"definitely not a FITS file" * 10)
    page, errors = open_page(browser, app_url)
    page.locator("input[type=file]").set_input_files([str(junk)])
    wait_for_text(page, ".mtopnet-message", "junk.fits", timeout=60)
    page.locator("input[type=file]").set_input_files([str(good)])
    message = wait_for_text(page, ".mtopnet-message", "added 1", timeout=60)
    new_id = message.split("added 1 spectra:")[-1].strip()
    # the new object is in the table (its last row, on the last page) and in the inspector
    page.locator('.tabulator-page[data-page="last"]').click()
    page.wait_for_selector(f'.tabulator-row:has-text("{new_id}")', timeout=30_000)
    wait_for_text(page, ".mtopnet-properties", new_id)
    assert [e for e in errors if "Failed to load resource" not in e] == []
    page.close()


def test_opening_a_data_set_from_the_page_predicts_it_and_shows_it(browser, app_url, small_survey):
    page, errors = open_page(browser, app_url)
    page.locator(".mtopnet-open-path input").fill("/no/such/folder")
    page.locator(".mtopnet-open button").click()
    wait_for_text(page, ".mtopnet-message", "no such folder")
    page.locator(".mtopnet-open-path input").fill(str(small_survey))
    page.locator(".mtopnet-open button").click()
    # the page reloads with ?open=PATH, predicts the store once (progress shown), then shows it
    page.wait_for_url("**open=*", timeout=60_000)
    page.wait_for_selector(".mtopnet-source", timeout=240_000)
    assert f"predicted/{small_survey.name}-" in text_of(page, ".mtopnet-source")
    page.wait_for_selector(".mtopnet-table .tabulator-row", timeout=60_000)
    assert [e for e in errors if "Failed to load resource" not in e] == []
    page.close()
