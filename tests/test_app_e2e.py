"""The served app in a real headless Chromium (Playwright driving the system browser)."""

import shutil
import time
from contextlib import contextmanager

import numpy as np
import pytest

pytest.importorskip("panel")
playwright_api = pytest.importorskip("playwright.sync_api")

from headless import (  # noqa: E402
    CHROMIUM,
    MAP_COLOURS_JS,
    MAP_FRAME_JS,
    MAP_POINT_JS,
    MAP_SELECTED_JS,
    SPECTRUM_STATE_JS,
    launch_chromium,
    open_dashboard,
    served,
    server_threads,
    text_of,
)

from app.dashboard import COLOUR_CHOICES  # noqa: E402

if not shutil.which(CHROMIUM):
    pytest.skip("no system Chromium (apt-get install chromium)", allow_module_level=True)

from mtopnet_core.fits_io import export_dataset_fits  # noqa: E402

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")]


@contextmanager
def served_results(results, model, data_dir, roots=()):
    with served(["--results", str(results), "--model", str(model), "--data-dir", str(data_dir),
                 "--roots", *map(str, roots)]) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def app_data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("appdata")


@pytest.fixture(scope="module")
def app_url(small_results, tiny_model, small_survey, app_data_dir):
    with served_results(small_results, tiny_model, app_data_dir, roots=[small_survey.parent]) as url:
        yield url


def wait_for_text(page, css: str, wanted: str, timeout: float = 30) -> str:
    end = time.time() + timeout
    while time.time() < end:
        text = text_of(page, css)
        if wanted in text:
            return text
        time.sleep(0.2)
    # what the page shows and where the in-process server's threads are, for a timeout seen once in a fresh clone
    raise AssertionError(f"{css}: {wanted!r} not in {text_of(page, css)[:300]!r}; the page shows "
                         f"{text_of(page, 'body')[:400]!r}; the server's threads:\n{server_threads()}")


def sign_in(page, name: str = "Ann Astronomer") -> None:
    """Type the inspector's name (required before a flag)."""
    box = page.locator(".mtopnet-inspector input")
    box.fill(name)
    box.press("Enter")


def test_page_loads_without_console_errors(browser, app_url):
    page, errors = open_dashboard(browser, app_url)
    time.sleep(2)
    assert page.locator(".mtopnet-table .tabulator-row").count() > 0
    assert errors == []
    page.close()


def test_bokeh_sets_every_range_from_the_server(browser, app_url):
    """BokehJS warned "could not set initial ranges" up to 53 times per session (issue 13, item 14)."""
    page, errors = open_dashboard(browser, app_url)
    warnings = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.locator(".mtopnet-colour select").select_option("entropy")
    time.sleep(1)
    page.get_by_text("Inspector", exact=True).click()
    wait_for_text(page, ".mtopnet-spectrum-caption", "lines at")
    # the saliency map follows the spectrum, which never waits for it (nor for TensorFlow's import)
    wait_for_text(page, ".mtopnet-saliency-caption", "saliency |dp/dx| of the redshift peak", timeout=120)
    page.locator("body").click(position={"x": 5, "y": 5})
    for key in "nnb":
        page.keyboard.press(key)
        time.sleep(0.7)
    page.get_by_text("Overview", exact=True).click()
    time.sleep(1)
    assert [w for w in warnings if "initial ranges" in w] == []
    assert errors == []
    page.close()


def test_pages_opened_at_once_load_nothing_from_outside_the_server(browser, app_url):
    """Panel's style sheets must come from this server (the app works offline): with several
    pages loading at once some used to point at Panel's CDN."""
    elsewhere, pages = [], []
    for _ in range(3):
        page = browser.new_page(viewport={"width": 1600, "height": 1300})
        page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:",
                                                                 "blob:")) else elsewhere.append(r.url))
        page.goto(app_url, wait_until="commit")
        pages.append(page)
    for page in pages:
        page.wait_for_selector(".mtopnet-table .tabulator-row", timeout=120_000)
    time.sleep(2)
    assert elsewhere == []
    for page in pages:
        page.close()


def test_tapping_a_point_in_the_map_shows_it_in_the_inspector(browser, app_url, small_results, monkeypatch):
    from bokeh.document import Document

    from mtopnet_core.results import open_results

    warm_up, target = (str(i) for i in open_results(small_results).catalogue["object_id"].iloc[[3, 11]])
    page, errors = open_dashboard(browser, app_url)
    # one object drawn first: on a server's first page the inspector's frames size themselves
    # to their first tick labels once (inner_width messages), whichever object comes first
    page.mouse.click(*page.evaluate(MAP_POINT_JS, warm_up))
    page.get_by_text("Inspector", exact=True).click()
    wait_for_text(page, ".mtopnet-spectrum-caption", warm_up)
    page.get_by_text("Overview", exact=True).click()
    time.sleep(1)
    # what the page sends back once it has drawn an object: nothing but the tap (automatic
    # ranges or frames resized by their tick labels came back as ~16 messages per object)
    sent_back, apply_patch = [], Document.apply_json_patch

    def record(self, patch, setter=None):
        sent_back.extend(e.get("attr") or e.get("msg_type") for e in dict(patch.content).get("events", []))
        return apply_patch(self, patch, setter=setter)

    monkeypatch.setattr(Document, "apply_json_patch", record)
    position = page.evaluate(MAP_POINT_JS, target)
    assert position is not None
    page.mouse.click(*position)
    wait_for_text(page, ".mtopnet-properties", target)
    page.get_by_text("Inspector", exact=True).click()
    wait_for_text(page, ".mtopnet-current", target)
    wait_for_text(page, ".mtopnet-spectrum-caption", target)  # drawn once its spectrum was read in the background
    time.sleep(1)
    monkeypatch.undo()
    assert [name for name in sent_back if name not in ("bokeh_event", "active")] == [], sent_back
    assert errors == []
    page.close()


def test_clicking_quickly_through_points_shows_the_last_one(browser, app_url, small_results):
    # a second click within Bokeh's double-tap interval, even on another point, arrives as a
    # DoubleTap event only: clicking quickly through points lost every other one
    from mtopnet_core.results import open_results

    first, second = (str(i) for i in open_results(small_results).catalogue["object_id"].iloc[[5, 17]])
    page, errors = open_dashboard(browser, app_url)
    positions = [page.evaluate(MAP_POINT_JS, target) for target in (first, second)]
    assert None not in positions and positions[0] != positions[1]
    page.mouse.click(*positions[0])
    page.wait_for_timeout(100)
    page.mouse.click(*positions[1])
    wait_for_text(page, ".mtopnet-properties", second)
    assert errors == []
    page.close()


@pytest.mark.parametrize("choice", list(COLOUR_CHOICES))
def test_every_map_colouring_colours_the_map(browser, app_url, choice):
    page, errors = open_dashboard(browser, app_url)
    if choice == "success":  # the default: choose another first, then come back
        page.locator(".mtopnet-colour select").select_option("entropy")
        time.sleep(1)
    page.locator(".mtopnet-colour select").select_option(choice)
    end, state = time.time() + 30, None
    while time.time() < end:
        state = page.evaluate(MAP_COLOURS_JS)
        if state and state["title"].endswith(choice):
            break
        time.sleep(0.2)
    assert state and state["title"].endswith(choice), state
    if choice in ("class", "success"):
        assert state["mapper"] == "CategoricalColorMapper" and state["legend"] and not state["colorbar"]
        assert len(set(state["values"])) >= 2
    else:
        assert state["mapper"] == "LinearColorMapper" and state["colorbar"] and not state["legend"]
        numbers = {float(v) for v in state["values"] if v not in ("NaN", "nan")}
        assert len(numbers) >= 3  # coloured by the quantity, not one colour for all
    assert errors == []
    page.close()


def wait_for_map_selection(page, wanted, timeout: float = 30) -> list[str]:
    end, shown = time.time() + timeout, None
    while time.time() < end:
        shown = page.evaluate(MAP_SELECTED_JS)
        if wanted(shown):
            return shown
        time.sleep(0.2)
    raise AssertionError(f"map selection: {shown}")


def test_typed_conditions_replace_a_box_selection_on_the_map_and_in_the_table(browser, app_url, small_results):
    from mtopnet_core.results import open_results

    cat = open_results(small_results).catalogue
    mapped = cat[np.isfinite(cat["umap_x"])]
    quiescent = sorted(mapped["object_id"][mapped["galaxy_class"].astype(str) == "quiescent"].astype(str))
    page, errors = open_dashboard(browser, app_url)
    left, top, width, height = page.evaluate(MAP_FRAME_JS)
    page.mouse.move(left + 3, top + 3)
    page.mouse.down()
    page.mouse.move(left + 0.9 * width, top + 0.9 * height, steps=10)
    page.mouse.up()
    boxed = wait_for_map_selection(page, lambda ids: len(ids) > len(quiescent))
    assert 0 < len(quiescent) < len(boxed)
    box = page.locator(".mtopnet-where input")
    box.fill("galaxy_class == quiescent")
    box.press("Enter")
    assert wait_for_map_selection(page, lambda ids: ids == quiescent) == quiescent
    wait_for_text(page, ".mtopnet-message", f"{len(quiescent)} objects where")
    # a condition that cannot be read says so, and that the table and the map keep their rows
    box.fill("galaxy_class == 1")
    box.press("Enter")
    wait_for_text(page, ".mtopnet-message", "no galaxy_class is '1' (values: quiescent, star-forming, starburst)")
    assert "keeps its" in text_of(page, ".mtopnet-message")
    assert page.evaluate(MAP_SELECTED_JS) == quiescent
    assert errors == []
    page.close()


def spectrum_state(page, wanted, timeout: float = 30) -> dict:
    end, state = time.time() + timeout, None
    while time.time() < end:
        state = page.evaluate(SPECTRUM_STATE_JS)
        if state and wanted(state):
            return state
        time.sleep(0.2)
    raise AssertionError(f"spectrum: {state}")


def test_the_spectrum_view_draws_masked_channels_as_chosen_in_one_colour_language(browser, app_url):
    from app.inspector import COLOURS

    page, errors = open_dashboard(browser, app_url)
    page.get_by_text("Inspector", exact=True).click()
    wait_for_text(page, ".mtopnet-spectrum-caption", "lines at")
    state = spectrum_state(page, lambda s: s["flux"] > 0)
    assert state["legend_above"] and state["masked_flux"] == 0  # gaps by default
    assert state["colours"]["lines at the true z"] == COLOURS["truth"]
    assert state["colours"]["lines at the shown solution"] == COLOURS["display"]
    assert state["colours"]["predicted line locations (p > 0.5)"] == COLOURS["predicted"]
    page.locator(".mtopnet-masked-style").get_by_text("dimmed", exact=True).click()
    spectrum_state(page, lambda s: s["masked_flux"] > 0)
    page.locator(".mtopnet-masked-style").get_by_text("gaps", exact=True).click()
    spectrum_state(page, lambda s: s["masked_flux"] == 0)
    assert errors == []
    page.close()


SCREENING_STATE_JS = """() => {
  const models = Bokeh.documents.flatMap((doc) => [...doc.all_models]);
  const named = (name) => models.find((m) => m.name === name);
  const point = named('mtopnet-curve-point');
  return {line: named('mtopnet-entropy-threshold').location, x: point.data.x[0], y: point.data.y[0]};
}"""
"""Where the entropy threshold's line sits on its histogram, and the accuracy-completeness curve's current point."""


def test_moving_the_entropy_slider_changes_the_accuracy_figures(browser, app_url):
    from app.state import SCREENING_RANGES

    page, errors = open_dashboard(browser, app_url)
    before = wait_for_text(page, ".mtopnet-accuracy", "kept")
    figures_before = page.evaluate(SCREENING_STATE_JS)
    handle = page.locator(".noUi-handle").first
    handle.focus()
    page.keyboard.press("End")  # the slider's maximum keeps every processed object
    end = time.time() + 30
    while page.evaluate(SCREENING_STATE_JS)["line"] == figures_before["line"] and time.time() < end:
        time.sleep(0.2)
    figures = page.evaluate(SCREENING_STATE_JS)
    # the table, the threshold line and the curve's point all follow the move
    assert text_of(page, ".mtopnet-accuracy") != before
    assert figures["line"] == pytest.approx(SCREENING_RANGES["entropy"][1])
    # keeps more: the completeness rises (the tiny model keeps nothing below entropy 2: no point yet)
    assert figures["x"] is not None and figures["x"] > (figures_before["x"] or 0.0)
    assert errors == []
    page.close()


def test_an_error_banner_goes_once_the_value_is_mended(browser, app_url):
    page, errors = open_dashboard(browser, app_url)
    page.get_by_text("Inspector", exact=True).click()
    wait_for_text(page, ".mtopnet-current", "current")
    sign_in(page)
    box = page.get_by_placeholder("e.g. 1.23456")
    box.fill("abc")
    box.press("Enter")
    wait_for_text(page, ".mtopnet-message", "'abc' is not a number")
    box.fill("1.2345")
    box.press("Enter")
    end = time.time() + 30
    while page.locator(".mtopnet-message").is_visible() and time.time() < end:
        time.sleep(0.2)
    assert not page.locator(".mtopnet-message").is_visible()
    assert errors == []
    page.close()


def test_keys_step_through_the_failures_and_are_ignored_while_typing(browser, app_url):
    page, errors = open_dashboard(browser, app_url)
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


def test_the_help_button_explains_the_numbers_over_the_page_and_every_mark_has_its_key(browser, app_url):
    from app.inspections import ISSUE_MARKS

    page, errors = open_dashboard(browser, app_url)
    table_top = page.locator(".mtopnet-table").bounding_box()["y"]
    page.locator(".mtopnet-help-button button").click()
    page.wait_for_selector(".mtopnet-help", state="visible", timeout=10_000)
    help_text = text_of(page, ".mtopnet-help")
    for term in ("Δz = z_peak − z_true", "accuracy", "completeness", "false rejections", "entropy", "skewness"):
        assert term in help_text
    for meaning in ISSUE_MARKS.values():
        assert f"mark: {meaning}" in help_text
    assert page.locator(".mtopnet-table").bounding_box()["y"] == table_top  # over the page, nothing moved
    assert "false rejections: fraction of the good redshifts" in text_of(page, ".mtopnet-accuracy")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("?")
    page.wait_for_selector(".mtopnet-help", state="hidden", timeout=10_000)
    # every issue mark is on a key, and its button says which
    page.get_by_text("Inspector", exact=True).click()
    wait_for_text(page, ".mtopnet-current", "current")
    sign_in(page)
    page.locator("body").click(position={"x": 5, "y": 5})
    for key, meaning in ISSUE_MARKS.items():
        button = page.locator(".mtopnet-marks button", has_text=f"{meaning} ({key})")
        assert "bk-active" not in (button.get_attribute("class") or "")
        page.keyboard.press(key)
        end = time.time() + 20
        while "bk-active" not in (button.get_attribute("class") or "") and time.time() < end:
            time.sleep(0.2)
        assert "bk-active" in (button.get_attribute("class") or ""), key
    assert errors == []
    page.close()


def test_the_inspector_name_is_required_before_a_flag_and_remembered_by_the_browser(browser, app_url):
    context = browser.new_context()
    page, errors = open_dashboard(context, app_url)
    page.get_by_text("Inspector", exact=True).click()
    wait_for_text(page, ".mtopnet-current", "current")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("3")
    wait_for_text(page, ".mtopnet-message", "type your name")
    assert "3 good" not in text_of(page, ".mtopnet-properties")
    sign_in(page)
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("3")
    wait_for_text(page, ".mtopnet-properties", "3 good")
    page.close()
    again, _ = open_dashboard(context, app_url)  # a reload in the same browser
    again.get_by_text("Inspector", exact=True).click()
    assert again.locator(".mtopnet-inspector input").input_value() == "Ann Astronomer"
    assert errors == []
    context.close()


def test_two_inspectors_at_once_see_where_they_disagree(browser, app_url):
    """Two browser sessions on one server: each keeps its own place and name, both write to the
    one inspection store, and each sees the objects on which they disagree."""
    pages = {}
    for name in ("Ines Inspector", "Otto Other"):
        context = browser.new_context()  # a browser of its own: its own cookies and session
        page, errors = open_dashboard(context, app_url)
        page.get_by_text("Inspector", exact=True).click()
        wait_for_text(page, ".mtopnet-current", "current")
        sign_in(page, name)
        pages[name] = (context, page, errors)
    (_, ines, ines_errors), (_, otto, otto_errors) = pages.values()
    target = text_of(ines, ".mtopnet-current").split("current")[-1].strip()
    assert text_of(otto, ".mtopnet-current").split("current")[-1].strip() == target
    # Otto moves on: Ines's page stays where it is
    otto.locator("body").click(position={"x": 5, "y": 5})
    otto.keyboard.press("n")
    end = time.time() + 20
    while text_of(otto, ".mtopnet-current").split("current")[-1].strip() == target and time.time() < end:
        time.sleep(0.2)
    assert text_of(otto, ".mtopnet-current").split("current")[-1].strip() != target
    assert text_of(ines, ".mtopnet-current").split("current")[-1].strip() == target
    otto.keyboard.press("b")
    wait_for_text(otto, ".mtopnet-current", target)
    # they flag the same object far apart
    for page, key, shown in ((ines, "4", "4 secure"), (otto, "1", "1 unknown")):
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press(key)
        wait_for_text(page, ".mtopnet-properties", shown)
    text = wait_for_text(otto, ".mtopnet-conflicts", target)
    assert "quality 1 to 4" in text and "Ines Inspector: 4" in text and "Otto Other: 1" in text
    # the other page sees it as soon as it moves, and its queue of disagreements holds the object
    ines.locator("body").click(position={"x": 5, "y": 5})
    ines.keyboard.press("n")
    wait_for_text(ines, ".mtopnet-conflicts", "quality 1 to 4")
    ines.locator(".mtopnet-queue select").select_option("inspectors disagree")
    wait_for_text(ines, ".mtopnet-current", "queue inspectors disagree")
    ines.locator("body").click(position={"x": 5, "y": 5})
    ines.keyboard.press("n")
    wait_for_text(ines, ".mtopnet-current", target)
    assert ines_errors == [] and otto_errors == []
    for context, _, _ in pages.values():
        context.close()


def test_a_flag_survives_a_server_restart(browser, small_results, tiny_model, tmp_path):
    with served_results(small_results, tiny_model, tmp_path) as url:
        page, _ = open_dashboard(browser, url)
        page.get_by_text("Inspector", exact=True).click()
        sign_in(page)
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("4")
        wait_for_text(page, ".mtopnet-properties", "4 secure")
        current = text_of(page, ".mtopnet-current").split("current")[-1].strip()
        page.close()
    assert list(tmp_path.glob("inspections/*.sqlite"))
    with served_results(small_results, tiny_model, tmp_path) as url:
        page, _ = open_dashboard(browser, url)
        assert current in text_of(page, ".mtopnet-current")
        wait_for_text(page, ".mtopnet-properties", "4 secure")
        page.close()


def _drop_files(page, paths) -> None:
    page.locator(".mtopnet-upload input[type=file]").set_input_files([str(p) for p in paths])


def test_uploads_good_and_corrupt_fits(browser, app_url, app_data_dir, small_survey, tmp_path):
    good = export_dataset_fits(small_survey, tmp_path / "fits", first=1)[0]
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"definitely not a FITS file" * 10)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(good.read_bytes()[:4000])
    page, errors = open_dashboard(browser, app_url)
    count = int(text_of(page, ".mtopnet-source").split(" objects")[0].split("·")[-1].strip())
    _drop_files(page, [junk])
    message = wait_for_text(page, ".mtopnet-message", "junk.fits", timeout=60)
    assert str(tmp_path) not in message and "/tmp" not in message  # no server paths
    _drop_files(page, [cut])
    message = wait_for_text(page, ".mtopnet-message", "cut.fits", timeout=60)
    assert "truncated or damaged" in message and "Astropy" not in message and "There may be" not in message
    _drop_files(page, [good])
    message = wait_for_text(page, ".mtopnet-message", "added 1", timeout=60)
    new_id = message.split("added 1 spectra:")[-1].strip()
    # the header counts it; the new object is in the table (its last row, on the last page) and in
    # the inspector, where what it lacks (truth, class) is a dash
    wait_for_text(page, ".mtopnet-source", f"{count + 1} objects (1 uploaded)")
    page.locator('.tabulator-page[data-page="last"]').click()
    page.wait_for_selector(f'.tabulator-row:has-text("{new_id}")', timeout=30_000)
    properties = wait_for_text(page, ".mtopnet-properties", new_id)
    assert "truth –" in properties and "nan" not in properties.lower()
    # uploads are read in memory: nothing of theirs is on the server's disk
    assert not [p for p in app_data_dir.rglob("*") if p.name in (junk.name, cut.name, good.name)]
    assert [e for e in errors if "Failed to load resource" not in e] == []
    page.close()


def test_an_idle_page_does_not_redraw_itself(browser, app_url):
    """A page nobody touches asks for (almost) no animation frames: Panel's file dropper (FilePond)
    redrew it 60 times a second (~0.1 s of a core per second and page), so a team's idle pages
    loaded the server machine's cores."""
    page, errors = open_dashboard(browser, app_url)
    time.sleep(2)
    frames = page.evaluate("""() => new Promise((resolve) => {
      let asked = 0;
      const original = window.requestAnimationFrame;
      window.requestAnimationFrame = (callback) => { asked += 1; return original.call(window, callback); };
      setTimeout(() => { window.requestAnimationFrame = original; resolve(asked); }, 2000);
    })""")
    assert frames < 10, f"{frames} animation frames asked for in 2 s of an idle page"
    assert errors == []
    page.close()


def test_a_file_over_the_upload_limit_is_refused_in_the_browser(browser, app_url, tmp_path, monkeypatch):
    from app.uploader import ChunkedUpload

    sent, take_chunk = [], ChunkedUpload._take_chunk
    monkeypatch.setattr(ChunkedUpload, "_take_chunk", lambda self, msg: (sent.append(msg), take_chunk(self, msg)))
    big = tmp_path / "big.fits"
    big.write_bytes(b"\0" * 21_000_000)  # over the 20 MB limit, under the server's 20 MiB message size
    page, errors = open_dashboard(browser, app_url)
    _drop_files(page, [big])
    page.wait_for_selector(".mtopnet-upload :text('File is too large')", timeout=30_000)
    # refused before sending: the server names it, from the page's word, and got none of its bytes
    wait_for_text(page, ".mtopnet-message", "big.fits: File is too large (21.0 MB; the limit is 20.0 MB)")
    assert sent == []
    page.close()


def test_the_page_opens_nothing_outside_the_roots(browser, app_url):
    texts = []
    for path in ("/etc", "/no/such/folder"):
        page, _ = open_dashboard(browser, app_url)
        page.locator(".mtopnet-open-path input").fill(path)
        page.locator(".mtopnet-open button").click()
        texts.append(wait_for_text(page, ".mtopnet-message", "cannot be opened").replace(path, "PATH"))
        page.close()
    assert texts[0] == texts[1]
    page = browser.new_page()
    page.goto(f"{app_url}?open=/etc", timeout=60_000)
    page.wait_for_selector("text=cannot be opened", timeout=60_000)
    page.close()


def test_opening_a_data_set_from_the_page_predicts_it_and_shows_it(browser, app_url, small_survey):
    page, errors = open_dashboard(browser, app_url)
    page.locator(".mtopnet-open-path input").fill(str(small_survey))
    page.locator(".mtopnet-open button").click()
    # the page reloads with ?open=PATH, predicts the store once (progress shown), then shows it
    page.wait_for_url("**open=*", timeout=60_000)
    page.wait_for_selector(".mtopnet-source", timeout=240_000)
    assert f"predicted/{small_survey.name}-" in text_of(page, ".mtopnet-source")
    page.wait_for_selector(".mtopnet-table .tabulator-row", timeout=60_000)
    assert [e for e in errors if "Failed to load resource" not in e] == []
    page.close()


def test_panel_serve_shows_a_fresh_results_folder_to_every_page_after_fitting_its_map(browser, small_survey,
                                                                                      tiny_model, tmp_path):
    """The README's `panel serve app --args --results DIR` on a folder fresh from `mtopnet predict`, opened
    in two pages at once: both show progress, then the dashboard. Until the dashboard's custom components
    were defined before any page was sent, only the first page to get its dashboard could draw it (the
    other's browser: "could not resolve type 'Hotkeys1'"). One page was enough when Chromium sent its request
    twice, as it often did here: the likely cause of this test's timeouts in sessions 19 and 20."""
    import signal
    import subprocess
    import sys
    import urllib.request

    from headless import free_port

    from mtopnet_core.batch import predict_store

    results = predict_store(small_survey, tmp_path / "fresh", tiny_model, workers=1, progress=False)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "panel", "serve", "app", "--address",
                               "127.0.0.1", "--port", str(port), "--args", "--results", str(results), "--model",
                               str(tiny_model), "--data-dir", str(tmp_path / "data")], stdout=subprocess.DEVNULL,
                              stderr=(tmp_path / "server.log").open("w"))  # a file: a full pipe would stall it
    try:
        pages, console = [], []
        for _ in range(2):
            page = browser.new_page(viewport={"width": 1600, "height": 1300})
            page.on("pageerror", lambda error: console.append(str(error)))
            end = time.time() + 120
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/app", timeout=30_000)
                    break
                except Exception:  # noqa: BLE001 - the server is still starting
                    assert time.time() < end, "panel serve did not start"
                    time.sleep(1)
            pages.append(page)
        # a request whose page never connects (a link preview, a retried request) builds no dashboard
        urllib.request.urlopen(f"http://127.0.0.1:{port}/app", timeout=60).read()
        for page in pages:
            try:
                page.wait_for_selector(".mtopnet-table .tabulator-row", timeout=180_000)
            except Exception as exc:  # noqa: BLE001 - what the page shows, what the server logged, its threads
                shown = text_of(page, "body")[:500]
                server.send_signal(signal.SIGABRT)  # faulthandler (-X) writes every thread's stack to the log
                server.wait(timeout=30)
                raise AssertionError(f"no dashboard; the page shows {shown!r}; its errors: {console[-5:]}; the "
                                     f"server's log: {(tmp_path / 'server.log').read_text()[:12000]}") from exc
            page.wait_for_selector(".mtopnet-upload .mtopnet-drop-zone", timeout=30_000)
        assert console == []
        assert not list(results.glob("*map*"))  # the map went into the app's data folder
        time.sleep(3)  # the unconnected session's data is prepared by now (the map exists); it polls each second
        assert (tmp_path / "server.log").read_text().count("dashboard of") == len(pages)
        for page in pages:
            page.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
