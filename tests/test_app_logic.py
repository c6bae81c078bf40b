"""The app's logic without a browser: screening numbers, selection by object ID, navigation,
inspection persistence and export, uploads, keys."""

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

pn = pytest.importorskip("panel")
pytest.importorskip("keras")

from app.dashboard import Dashboard  # noqa: E402
from app.data import load_app_data  # noqa: E402
from app.inspections import Inspection, InspectionStore  # noqa: E402
from app.state import Session  # noqa: E402
from mtopnet_core.evaluation import screening_summary  # noqa: E402
from mtopnet_core.fits_io import export_dataset_fits  # noqa: E402


@pytest.fixture
def session(small_results, tiny_model, tmp_path):
    data = load_app_data(small_results, tiny_model)
    return Session(data, InspectionStore(tmp_path / "inspections.sqlite", data.model_version))


def test_screening_numbers_are_the_core_evaluation_and_follow_the_thresholds(session):
    cat = session.data.catalogue
    session.entropy_max = float(np.nanmedian(cat["entropy"]))
    numbers = session.screening_numbers()
    expected = screening_summary(cat, session.entropy_max, None, session.dz_threshold, drop_flagged=True)
    pd.testing.assert_frame_equal(numbers, expected)
    # flagged predictions (the tiny model's M* often lies outside its training range) are screened out
    flagged = cat["flags"].astype(str).to_numpy() != ""
    assert session.kept().sum() == ((cat["entropy"] < session.entropy_max).to_numpy() & ~flagged).sum()
    session.use_flags = False
    kept_at_median = session.kept().sum()
    assert kept_at_median == (cat["entropy"] < session.entropy_max).sum()
    session.entropy_max = float(np.nanmax(cat["entropy"])) + 0.01
    assert session.kept().sum() == len(cat) > kept_at_median
    session.use_entropy = False
    session.use_skewness, session.skewness_min = True, float(np.nanmedian(cat["skewness"]))
    assert session.kept().sum() == (cat["skewness"] > session.skewness_min).sum()
    curve = session.completeness_curve()
    assert curve["completeness"].is_monotonic_increasing
    # with the skewness cut on, the current screening is a point of the curve
    session.use_entropy, session.entropy_max = True, float(np.nanquantile(cat["entropy"], 0.9))
    truth = np.isfinite(cat["z_true"].to_numpy(float))
    kept = session.kept()[truth]
    point = (kept.mean(), session.success()[truth][kept].mean())
    curve = session.completeness_curve()
    nearest = curve.iloc[(curve["completeness"] - point[0]).abs().argmin()]
    assert abs(nearest["completeness"] - point[0]) < 0.05 and abs(nearest["accuracy"] - point[1]) < 0.05
    assert curve["completeness"].max() < 1.0  # the curve never goes past the other cuts


def test_selection_and_navigation_use_object_ids(session):
    ids = session.data.catalogue["object_id"].astype(str).tolist()
    dashboard = Dashboard(session)
    frame = dashboard.map_view._map_frame()
    dashboard.map_view._map_ids = frame["object_id"].tolist()
    # a map selection gives indices into the plotted frame; they become IDs, then the table's rows
    dashboard.map_view._on_map_selection(type("Event", (), {"new": [3, 7]})())
    assert session.selection == [frame["object_id"][3], frame["object_id"][7]]
    assert session.queue_kind == "selection" and session.queue() == session.selection
    assert dashboard.table_view.table.value["object_id"].tolist() == sorted(session.selection, key=ids.index)
    dashboard.map_view._on_map_selection(type("Event", (), {"new": [5]})())
    assert session.current == frame["object_id"][5]
    # a click on a table row shows that row's object, whatever the table shows
    dashboard.table_view._on_table_click(type("Event", (), {"row": 0})())
    assert session.current == dashboard.table_view.table.value["object_id"].iloc[0]
    session.selection, session.queue_kind = [], "all"
    session.current = ids[-1]
    assert session.step(+1) == ids[0] and session.step(-1) == ids[-1]


def test_keys_step_flag_and_cycle_solutions(session):
    dashboard = Dashboard(session)
    session.inspector = "K. Eys"
    session.queue_kind = "all"
    ids = session.queue()
    session.current = ids[0]
    dashboard._on_key(type("Event", (), {"new": {"key": "n", "count": 1}})())
    assert session.current == ids[1]
    dashboard._on_key(type("Event", (), {"new": {"key": "3", "count": 2}})())
    assert session.inspections.get(ids[1]).quality == 3
    dashboard._on_key(type("Event", (), {"new": {"key": "z", "count": 3}})())
    assert session.inspections.get(ids[1]).issues == "z"
    session.current = ids[0]
    dashboard._on_key(type("Event", (), {"new": {"key": "u", "count": 4}})())
    assert session.current == ids[2]  # ids[1] is inspected
    solutions = session.solutions()
    dashboard._on_key(type("Event", (), {"new": {"key": "a", "count": 5}})())
    if len(solutions) > 1:
        assert session.display_z == solutions[1][0]
    dashboard._on_key(type("Event", (), {"new": {"key": "p", "count": 6}})())
    assert session.display_z is None


def test_inspections_persist_atomically_and_export_with_string_ids(session, tmp_path):
    store = session.inspections
    object_id = session.data.catalogue["object_id"].iloc[2]
    session.inspector = "A. Astronomer"
    session.current = object_id
    session.flag(quality=4, z_corrected=1.23456, comment="Halpha and [OIII], comma, ok")
    with pytest.raises(ValueError, match="quality flag"):
        store.set(object_id, quality=7)
    with pytest.raises(ValueError, match="issue marks"):
        store.set(object_id, issues="q")
    reopened = InspectionStore(tmp_path / "inspections.sqlite")
    record = reopened.get(object_id)
    assert (record.quality, record.z_corrected, record.inspector) == (4, 1.23456, "A. Astronomer")
    assert "comma" in record.comment and list(tmp_path.glob("*.tmp")) == []
    assert reopened.get("not there") == Inspection()
    cat = session.screened_catalogue()
    for kind in ("csv", "ecsv", "fits"):
        path = store.export(cat, tmp_path / f"out.{kind}", inspector="A. Astronomer")
        table = Table.read(path, format={"csv": "ascii.csv", "ecsv": "ascii.ecsv", "fits": "fits"}[kind])
        ids = [str(i) for i in table["object_id"]]
        assert ids == cat["object_id"].astype(str).tolist()
        row = ids.index(object_id)
        assert int(table["vi_quality"][row]) == 4 and float(table["vi_z_corrected"][row]) == pytest.approx(1.23456)
        assert str(table["model_version"][0]) == session.data.model_version
        assert "screen_kept" in table.colnames
    assert Table.read(tmp_path / "out.fits").meta["INSPECTR"] == "A. Astronomer"
    for kind in ("ecsv", "fits"):  # units travel; the model's whole name too (FITS: CONTINUE cards)
        table = Table.read(tmp_path / f"out.{kind}")
        assert str(table["m_h"].unit) == "mag" and str(table["t_exp_h"].unit) == "h"
        assert str(table["flux_halpha"].unit) in ("erg / (s cm2)", "erg / (cm2 s)")
    assert "Msun" in Table.read(tmp_path / "out.ecsv")["log_mstar_pred"].description
    long_name = "mtopnet_model_v6 (code 0.2.0, 28000 training spectra, seed 20261130), calibrated on cal6k"
    InspectionStore(tmp_path / "long.sqlite", long_name).export(cat, tmp_path / "long.fits")
    assert Table.read(tmp_path / "long.fits").meta["MODEL"] == long_name  # not cut at 60 characters


def test_unreadable_inspection_store_is_kept_aside(tmp_path):
    path = tmp_path / "inspections.sqlite"
    path.write_bytes(b"not an SQLite database at all" * 100)
    store = InspectionStore(path)
    assert store.records == {}
    assert len(list(tmp_path.glob("inspections.unreadable-*.sqlite"))) == 1
    store.set("X", quality=2)
    assert InspectionStore(path).get("X").quality == 2


def test_inspections_of_the_json_format_are_migrated_once(tmp_path):
    legacy = tmp_path / "inspections.json"
    legacy.write_text(json.dumps({"format": "mtopnet-inspections", "model_version": "m", "records": {
        "A": {"quality": 3, "issues": "z", "z_corrected": 1.5, "comment": "old", "inspector": "ann",
              "updated": "2026-11-20T10:00:00+00:00"},
        "B": {"quality": 4, "issues": "", "z_corrected": None, "comment": "", "inspector": "bob",
              "updated": "2026-11-20T10:01:00+00:00"}}}))
    store = InspectionStore(tmp_path / "inspections.sqlite")
    assert store.get("A") == Inspection(3, "z", 1.5, "old", "ann", "2026-11-20T10:00:00+00:00")
    assert store.get("B").quality == 4 and store.get("B").inspector == "bob"
    assert not legacy.exists() and (tmp_path / "inspections.json.migrated").is_file()
    store.set("A", inspector="cy", comment="new")
    # a legacy file put back by hand is not imported a second time over newer changes
    (tmp_path / "inspections.json.migrated").rename(legacy)
    reopened = InspectionStore(tmp_path / "inspections.sqlite")
    assert reopened.get("A").comment == "new" and len(reopened.history("A")) == 2


def test_each_change_is_kept_with_its_inspector(tmp_path):
    store = InspectionStore(tmp_path / "i.sqlite")
    store.set("A", inspector="ann", quality=3)
    other = InspectionStore(tmp_path / "i.sqlite")  # another process's view of the same file
    other.set("A", inspector="bob", comment="lines at z=1.2")
    # the first store sees the second's change, and kept its own quality flag
    assert store.get("A") == Inspection(3, "", None, "lines at z=1.2", "bob", store.get("A").updated)
    history = store.history("A")
    assert history["inspector"].tolist() == ["ann", "bob"] and history["quality"].tolist() == [3, 3]


def test_uploads_add_good_spectra_and_report_bad_files(session, small_survey, tmp_path):
    files = export_dataset_fits(small_survey, tmp_path / "fits", first=2)
    n_before = len(session.data.catalogue)
    report = session.data.add_fits({files[0].name: files[0].read_bytes(), "junk.fits": b"this is not FITS",
                                    files[1].name: files[1].read_bytes(), "big.fits": b"x" * 100},
                                   max_bytes=50)
    # the size limit applies before anything is parsed
    assert any("big.fits" in p and "limit" in p for p in report.problems)
    report = session.data.add_fits({files[0].name: files[0].read_bytes(), "junk.fits": b"this is not FITS",
                                    files[1].name: files[1].read_bytes()})
    assert len(report.added) == 2 and len(report.problems) == 1 and "junk.fits" in report.problems[0]
    cat = session.data.catalogue
    assert len(cat) == n_before + 2 and (cat["source"] == "upload").sum() == 2
    uploaded = cat[cat["source"] == "upload"]
    assert np.isfinite(uploaded[["umap_x", "umap_y", "z_peak"]].to_numpy()).all()
    # the same objects are already in the catalogue: uploads get their own IDs
    assert not set(uploaded["object_id"]) & set(cat[cat["source"] == "results"]["object_id"])
    spec = session.data.spectrum(report.added[0])
    assert spec.spectrum.flux.shape == (1, 12217) and spec.object_id == report.added[0]
    assert np.isclose(spec.pdf.sum(), 1, atol=1e-4)
    # uploads are read in memory: nothing lands on the server's disk, and messages hold no server path
    assert not any(tmp_path.rglob("junk.fits")) and str(tmp_path) not in " ".join(report.problems)


def test_after_an_upload_the_page_counts_it_and_shows_what_is_missing_as_a_dash(session, small_survey, tmp_path):
    files = export_dataset_fits(small_survey, tmp_path / "fits", first=1)
    dashboard = Dashboard(session)
    dashboard.__panel__()
    n = len(session.data.catalogue)
    assert f"· {n} objects ·" in dashboard._source_line(session.catalogue_version)
    dashboard._show_upload(session.data.add_fits({files[0].name: files[0].read_bytes()}))
    assert f"· {n + 1} objects (1 uploaded) ·" in dashboard._source_line(session.catalogue_version)
    session.inspector = "T. Ester"
    session.flag(quality=3, comment="<b>Ha</b> at 1.6 um")
    text = dashboard.inspector._properties(session.current, 0)
    assert "nan" not in text.lower() and "truth –" in text and "class –" in text
    assert "by T. Ester · comment: “&lt;b&gt;Ha&lt;/b&gt; at 1.6 um”" in text
    # the object without truth is neither good nor failed: no bar of its own in the histograms
    import holoviews as hv

    hv.extension("bokeh")
    overlay = dashboard.screening._histogram("entropy", session.dz_threshold, session.catalogue_version)
    assert [element.label.split(" (")[0] for element in overlay] == ["good", "failed"]
    assert overlay.opts.get().kwargs["title"].endswith("(1 without truth left out)")


def test_each_session_has_its_own_catalogue_and_uploads_over_shared_data(session, small_survey, tmp_path):
    shared = session.data
    shared.model  # noqa: B018 - the server loads it once, before any session
    first, second = shared.for_session(), shared.for_session()
    assert first.results is shared.results and first.store is shared.store and first._model is shared._model
    files = export_dataset_fits(small_survey, tmp_path / "fits", first=1)
    added = first.add_fits({files[0].name: files[0].read_bytes()}).added
    assert len(first.catalogue) == len(second.catalogue) + 1 == len(shared.catalogue) + 1
    assert first.spectrum(added[0]).object_id == added[0]
    with pytest.raises(KeyError):
        second.spectrum(added[0])  # one session's upload is not another's
    assert second._last_spectrum is None and second._last_saliency is None


def test_an_upload_is_placed_in_the_map_near_its_twin(session, small_survey, tmp_path):
    """Placement depends on the spectrum: a re-uploaded object lands on its own point, not on a fixed spot."""
    cat = session.data.catalogue
    ids = cat["object_id"].astype(str).tolist()
    chosen = [ids[3], ids[20]]
    files = export_dataset_fits(small_survey, tmp_path / "fits", ids=chosen)
    report = session.data.add_fits({f.name: f.read_bytes() for f in files})
    assert len(report.added) == 2
    cat = session.data.catalogue
    placed = cat[cat["source"] == "upload"][["umap_x", "umap_y"]].to_numpy(float)
    original = cat.set_index("object_id").loc[chosen, ["umap_x", "umap_y"]].to_numpy(float)
    np.testing.assert_allclose(placed, original, atol=1e-3)
    assert not np.allclose(placed[0], placed[1])


def test_export_download_holds_the_screened_catalogue(session):
    dashboard = Dashboard(session)
    session.inspector = "B"
    content = dashboard._export("csv").getvalue().decode()
    header, first = content.splitlines()[:2]
    assert "object_id" in header and "screen_kept" in header and "vi_quality" in header
    assert first.startswith(str(session.data.catalogue["object_id"].iloc[0]))


def test_rows_where_selects_by_numeric_conditions_and_rejects_anything_else(session):
    from app.state import parse_conditions

    cat = session.data.catalogue
    threshold = float(np.nanmedian(cat["z_peak"]))
    ids = session.where(f"z_peak >= {threshold} and t_exp_h == 8")
    expected = cat["object_id"][(cat["z_peak"] >= threshold) & (cat["t_exp_h"] == 8)].tolist()
    assert ids == expected and 0 < len(ids) < len(cat)
    assert session.current
    with pytest.raises(ValueError, match="type your name"):
        session.flag(quality=4)  # every record says who set it
    session.inspector = "T. Ester"
    session.flag(quality=4)
    assert session.where("vi_quality == 4") == [session.current]
    numeric = {c: cat[c] for c in ("abs_dz", "m_h", "entropy")}
    assert parse_conditions("abs_dz>=1e-2, m_h < 24 & entropy != 2", numeric) == [
        ("abs_dz", ">=", 0.01), ("m_h", "<", 24.0), ("entropy", "!=", 2.0)]
    # a text column (the galaxy class) by == or != and one of its values, bare or quoted
    classes = cat["galaxy_class"].astype(str)
    assert session.where("galaxy_class == quiescent") == cat["object_id"][classes == "quiescent"].tolist()
    assert session.where("galaxy_class != 'star-forming', m_h < 30") == \
        cat["object_id"][(classes != "star-forming") & (cat["m_h"] < 30)].tolist()
    for bad, message in (("m_h <", "cannot read"), ("__import__('os') > 1", "cannot read"),
                         ("colour > 1", "no column 'colour'"), ("m_h == bright", "m_h is a number"),
                         ("galaxy_class == 1", r"no galaxy_class is '1' \(values: quiescent, star-forming"),
                         ("galaxy_class < quiescent", "galaxy_class is text; use == or !=")):
        with pytest.raises(ValueError, match=message):
            session.where(bad)
    # the page: conditions fill the selection and the queue; a bad one is a message, not an error
    dashboard = Dashboard(session)
    dashboard.table_view.where.value = "t_exp_h == 8"
    assert session.selection == cat["object_id"][cat["t_exp_h"] == 8].tolist()
    assert session.queue_kind == "selection"
    assert dashboard.table_view.table.value["object_id"].tolist() == session.selection
    dashboard.table_view.where.value = "t_exp_h =< 8"
    assert "cannot read" in dashboard.page.message.object and dashboard.page.message.visible
    dashboard.table_view.where.value = ""
    assert session.selection == [] and len(dashboard.table_view.table.value) == len(cat)


def test_the_spectrum_keeps_emission_lines_and_shows_masked_channels_as_asked(session):
    from app.inspector import spectrum_layers
    from mtopnet_core import grid

    wavelength, threshold = grid.wavelength_grid(), session.data.model.preprocessing.sky_threshold
    inspected = session.data.spectrum(session.current)
    stored = inspected.spectrum
    gaps = spectrum_layers(inspected, wavelength, threshold, smoothing=1)
    masked = np.isnan(gaps.error) & np.isfinite(stored.flux[0])
    # a narrow line (FWHM 3 channels) far above the 99.5th percentile, measured at high S/N
    usable = np.flatnonzero(~masked & np.isfinite(gaps.flux))
    centre = usable[len(usable) // 2]
    peak = 40 * (gaps.ylim[1] - gaps.ylim[0])
    flux = stored.flux.copy()
    flux[0] += (peak * np.exp(-0.5 * ((np.arange(wavelength.size) - centre) / 1.3) ** 2)).astype(flux.dtype)
    lined = replace(inspected, spectrum=replace(stored, flux=flux))
    with_line = spectrum_layers(lined, wavelength, threshold, smoothing=1)
    assert with_line.ylim[1] >= peak > gaps.ylim[1]
    # gaps: the masked channels are not drawn; dimmed: drawn apart, and nothing else changes
    assert np.isnan(gaps.flux[masked]).all() and np.isnan(gaps.masked_flux).all()
    dimmed = spectrum_layers(inspected, wavelength, threshold, smoothing=1, masked_style="dimmed")
    assert np.isfinite(dimmed.masked_flux[masked]).mean() > 0.9 and np.isnan(dimmed.masked_flux[~masked]).all()
    np.testing.assert_array_equal(dimmed.flux, gaps.flux)
    with pytest.raises(ValueError, match="masked channels: 'hidden'"):
        spectrum_layers(inspected, wavelength, threshold, masked_style="hidden")


def test_predicted_line_locations_are_drawn_with_their_probability(session):
    from app.inspector import spectrum_layers
    from mtopnet_core import grid

    wavelength = grid.wavelength_grid()
    inspected = session.data.spectrum(session.current)
    probability = np.zeros(grid.N_CHANNELS, np.float32)
    probability[5000:5004] = [0.6, 0.9, 0.8, 0.55]  # one predicted line, peaking at 0.9
    probability[9000:9002] = 0.7
    lined = replace(inspected, line_probability=probability)
    layers = spectrum_layers(lined, wavelength, session.data.model.preprocessing.sky_threshold)
    np.testing.assert_allclose(layers.predicted_lines, [wavelength[5001], wavelength[9000]])
    np.testing.assert_allclose(layers.predicted_probability, [0.9, 0.7], rtol=1e-6)
    dashboard = Dashboard(session)
    dashboard.__panel__()
    figures = dashboard.inspector.figures
    figures.show(session.current, lined, layers, 1.2, None, None, True)
    drawn = figures._segments["predicted"].data
    np.testing.assert_allclose(drawn["x0"], layers.predicted_lines)
    np.testing.assert_allclose(drawn["p"], [0.9, 0.7], rtol=1e-6)
    assert drawn["alpha"][0] > drawn["alpha"][1]  # the surer line drawn stronger
    assert "2 predicted line locations (purple dashes)" in figures.spectrum_caption.object


def test_smoothing_weights_by_inverse_variance_and_never_crosses_the_band_gap():
    from app.inspector import smooth, stagger
    from mtopnet_core import grid

    values = np.ones(grid.N_CHANNELS)
    values[100] = 10.0
    weights = np.ones(grid.N_CHANNELS)
    weights[100] = 100.0  # a channel measured ten times better counts a hundred times more
    assert smooth(values, 3, weights)[101] == pytest.approx((1 + 1000 + 1) / 102)
    assert smooth(values, 3)[101] == pytest.approx(12 / 3)
    assert np.array_equal(smooth(values, 1, weights), values) and np.isnan(smooth(values, 1, 0 * weights)).all()
    step = np.where(np.arange(grid.N_CHANNELS) < grid.contiguous_segments()[1].start, 0.0, 5.0)
    smoothed = smooth(step, 9)
    last_yj = grid.contiguous_segments()[0].stop - 1
    assert smoothed[last_yj] == 0.0 and smoothed[last_yj + 1] == 5.0
    # labels closer than the gap go to other levels, in wavelength order
    assert stagger(np.array([1000.0, 0.0, 50.0, 100.0, 300.0]), 120.0).tolist() == [0, 0, 1, 2, 0]


def test_one_colour_language_in_the_inspector(session):
    from app.inspector import COLOURS

    dashboard = Dashboard(session)
    dashboard.__panel__()
    figures = dashboard.inspector.figures
    spectrum_colours = {item.label["value"]: item.renderers[0].glyph.line_color
                        for item in figures.spectrum.legend[0].items}
    assert spectrum_colours["lines at the true z"] == COLOURS["truth"] == figures._pdf_truth.line_color
    assert spectrum_colours["lines at the shown solution"] == COLOURS["display"] == figures._pdf_display.line_color
    assert spectrum_colours["predicted line locations (p > 0.5)"] == COLOURS["predicted"]
    assert figures.pdf.renderers[0].glyph.line_color == COLOURS["prediction"]
    assert len({COLOURS[k] for k in ("truth", "display", "predicted", "prediction")}) == 4
    # the legend sits above the frame, not on the data
    assert figures.spectrum.legend[0] in figures.spectrum.above


def test_inspector_figures_show_the_object_in_place(session):
    from app.inspector import spectrum_layers
    from mtopnet_core import grid
    from mtopnet_core.preprocessing import channel_mask

    wavelength = grid.wavelength_grid()
    spectrum = session.data.spectrum(session.current)
    layers = spectrum_layers(spectrum, wavelength, session.data.model.preprocessing.sky_threshold)
    stored = spectrum.spectrum
    masked = channel_mask(stored.flux, stored.sky, stored.error, stored.mask,
                          session.data.model.preprocessing.sky_threshold)[0]
    # every masked channel lies in one shaded run, no unmasked channel does
    inside = np.zeros(wavelength.size, bool)
    for lo, hi in layers.masked_runs:
        inside |= (wavelength >= lo) & (wavelength <= hi)
    assert np.array_equal(inside, masked)
    assert np.isnan(layers.error[masked]).all()
    # robust limits: a huge spike in one channel does not move them
    flux = stored.flux.copy()
    flux[0, np.flatnonzero(~masked)[100]] = 1e6
    spiked = replace(spectrum, spectrum=replace(stored, flux=flux))
    assert spectrum_layers(spiked, wavelength, session.data.model.preprocessing.sky_threshold).ylim == \
        pytest.approx(layers.ylim, rel=0.05)
    assert np.isnan(layers.flux[np.flatnonzero(np.diff(wavelength) > 100)]).all()  # no line across the band gap

    dashboard = Dashboard(session)
    dashboard.__panel__()
    figures = dashboard.inspector.figures
    models = {id(m) for m in (figures.spectrum, figures.saliency, figures.pdf, *figures.insets.values())}
    saliency_maps = []
    for object_id in session.queue()[:2]:
        session.current = object_id
        assert figures.spectrum_caption.object.startswith(f"<b>{object_id}</b>:")
        pdf = session.data.spectrum(object_id).pdf
        assert np.array_equal(figures._pdf.data["p"], np.nan_to_num(pdf))
        # the PDF is zoomed to where its probability lies (the overview keeps the whole range)
        start, end = figures.pdf.x_range.start, figures.pdf.x_range.end
        centres = grid.redshift_bin_centres()
        assert pdf[(centres >= start) & (centres <= end)].sum() > 0.99 * np.nansum(pdf)
        assert (figures._pdf_window.left, figures._pdf_window.right) == (start, end)
        # the saliency map follows the spectrum (a second background step), of this object's peak
        saliency_maps.append(np.asarray(figures._saliency.data["y"]))
        assert saliency_maps[-1].shape == wavelength.shape and np.nanmax(saliency_maps[-1]) > 0
        assert figures.saliency_caption.object == "saliency |dp/dx| of the redshift peak"
        # every range is the server's (an automatic one comes back from the browser after each object)
        for plot in (figures.spectrum, figures.saliency, figures.pdf, figures.pdf_overview, *figures.insets.values()):
            assert type(plot.x_range).__name__ == type(plot.y_range).__name__ == "Range1d"
        for name, inset in figures.insets.items():
            label = figures.inset_labels[name]
            if label.text.startswith("at "):  # the line's wavelength, written inside the inset's frame
                assert inset.x_range.start <= float(label.text.split()[1]) <= inset.x_range.end
                assert (label.x, label.y) == (inset.x_range.start, inset.y_range.end)
            else:
                assert label.text == "off the grid" and (label.x, label.y) == (0.02, 0.98)
                assert (inset.x_range.start, inset.x_range.end, inset.y_range.start, inset.y_range.end) == (0, 1, 0, 1)
    assert models == {id(m) for m in (figures.spectrum, figures.saliency, figures.pdf, *figures.insets.values())}
    assert not np.allclose(*saliency_maps, equal_nan=True)  # each object's own map
    # a solution redraws the line markers there, and the map marks the current object
    session.display_z = 1.5
    assert "z = 1.5000" in figures.spectrum_caption.object and figures._pdf_display.visible
    assert figures.saliency_caption.object == "saliency |dp/dx| of the redshift solution z = 1.5000"
    row = session.current_row()
    assert dashboard.map_view._marker.data["x"] == [pytest.approx(row["umap_x"])]


def test_the_inspector_draws_only_the_newest_request(session):
    """The spectrum is read in the background: an answer that comes after the page asked for
    another object is dropped, whatever order the answers come in."""
    dashboard = Dashboard(session)
    dashboard.__panel__()
    pending = []
    dashboard.page.in_background = lambda work, then, what, **_: pending.append((work, then))
    first, second = [o for o in session.queue() if o != session.current][:2]
    session.current = first
    session.current = second
    (work_first, draw_first), (work_second, draw_second) = pending[-2:]
    draw_second(work_second())
    assert dashboard.inspector.figures.spectrum_caption.object.startswith(f"<b>{second}</b>:")
    flux = dashboard.inspector.figures._spectrum.data["flux"].copy()
    draw_first(work_first())  # late, and no longer wanted
    assert dashboard.inspector.figures.spectrum_caption.object.startswith(f"<b>{second}</b>:")
    assert np.array_equal(dashboard.inspector.figures._spectrum.data["flux"], flux, equal_nan=True)
    first_flux, second_flux = (session.data.spectrum(name).spectrum.flux for name in (first, second))
    assert not np.array_equal(first_flux, second_flux)
    # the saliency map is a second step, asked for by the drawing that was kept, and dropped too
    # when it comes after the page has moved on
    assert len(pending) == 3
    work_saliency, draw_saliency = pending[2]
    figures = dashboard.inspector.figures
    session.current = first
    draw_saliency(work_saliency())
    assert figures.saliency_caption.object == "saliency map: computing"
    assert np.isnan(figures._saliency.data["y"]).all()
    session.current = second
    work_spectrum, draw_spectrum = pending[-1]
    draw_spectrum(work_spectrum())
    draw_saliency(work_saliency())
    assert figures.saliency_caption.object == "saliency |dp/dx| of the redshift peak"
    assert np.nanmax(figures._saliency.data["y"]) > 0


def test_a_confident_pdf_is_zoomed_to_its_peak():
    from app.inspector import pdf_window
    from mtopnet_core import grid

    centres = grid.redshift_bin_centres()
    narrow = np.exp(-0.5 * ((centres - 1.5) / 0.004) ** 2)
    start, end = pdf_window(narrow / narrow.sum(), centres)
    assert 1.4 < start < 1.5 < end < 1.6 and end - start >= 0.06
    two = narrow + np.exp(-0.5 * ((centres - 2.4) / 0.004) ** 2)
    assert pdf_window(two / two.sum(), centres)[1] > 2.4  # both solutions in view
    assert pdf_window(narrow / narrow.sum(), centres, display_z=2.0)[1] > 2.0  # and the one shown
    assert pdf_window(np.full(centres.size, np.nan), centres) == (centres[0], centres[-1])


def test_solutions_choice_and_map_tap_follow_the_session(session):
    dashboard = Dashboard(session)
    view = dashboard.inspector._solutions_view()
    choice, listing = view.select(pn.widgets.RadioButtonGroup)[0], view.select(pn.pane.HTML)[0]
    for object_id in session.queue():
        session.current = object_id
        if len(session.solutions()) > 1:
            break
    else:
        pytest.fail("the test set should have a PDF with two solutions")
    solutions = session.solutions()
    # the list gives the PDF's peaks, highest first, numbered as the buttons; the peak is chosen on a new object
    listed = [line for line in listing.object.split("<br>")]
    assert len(listed) == min(len(solutions), 5)
    for k, (z, _, _) in enumerate(solutions[:5]):
        assert listed[k].startswith(f"<b>{k + 1}</b> · z = {z:.4f}")
    assert choice.value == 0 and session.display_z is None
    choice.value = 1  # a click on the second solution draws the lines there
    assert session.display_z == solutions[1][0]
    session.cycle_solution()  # key `a`: the widget follows
    assert solutions[choice.value][0] == session.display_z
    # a tap anywhere shows the object whose map point is nearest
    frame = dashboard.map_view._map_frame()
    dashboard.map_view._map_ids = frame["object_id"].tolist()
    dashboard.map_view._map_xy = frame[["umap_x", "umap_y"]].to_numpy(float)
    target = frame.iloc[len(frame) // 2]
    dashboard.map_view._on_map_tap(float(target["umap_x"]) + 1e-6, float(target["umap_y"]) - 1e-6)
    assert session.current == target["object_id"]
    assert choice.value == 0 and f"z = {session.solutions()[0][0]:.4f}" in listing.object


def test_source_kind_names_what_the_app_can_open(small_results, small_survey, tmp_path):
    import json as json_module

    from app.sources import source_kind

    assert source_kind(small_results) == "results" and source_kind(small_survey) == "store"
    with pytest.raises(ValueError, match="not an M-TOPnet data set"):
        source_kind(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="the app opens results of `mtopnet predict`"):
        source_kind(tmp_path)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    meta = json_module.loads((small_results / "results.json").read_text())
    (unfinished / "results.json").write_text(json_module.dumps({**meta, "status": "writing"}))
    with pytest.raises(ValueError):
        source_kind(unfinished)


def test_only_folders_under_the_roots_open_and_refusals_reveal_nothing(small_results, tmp_path):
    from app.sources import resolve_under_roots

    roots = (small_results.parent.resolve(), (tmp_path / "data").resolve())
    assert resolve_under_roots(str(small_results), roots) == small_results.resolve()
    (tmp_path / "escape").symlink_to("/etc")
    outside = []
    for text in ("/etc", "/no/such/folder", f"{small_results}/../../..", str(tmp_path / "escape"), "relative/path",
                 "", "\x00"):
        with pytest.raises(ValueError) as refusal:
            resolve_under_roots(text, roots)
        outside.append(str(refusal.value).replace(repr(text.strip()[:200]), "PATH"))
    # the same words whether the folder exists or not: the page learns nothing about the disk
    assert len(set(outside)) == 1 and "/etc" not in outside[0]


def test_a_results_folder_opened_read_only_gets_its_map_in_the_app_data_folder(small_survey, tiny_model, tmp_path):
    from app.data import load_app_data
    from app.sources import map_path, prepare_map, results_ready
    from mtopnet_core.batch import predict_store

    results = predict_store(small_survey, tmp_path / "theirs", tiny_model, workers=1, progress=False)
    before = sorted((p.relative_to(results), p.stat().st_mtime_ns) for p in results.rglob("*"))
    data_dir = tmp_path / "app-data"
    assert not results_ready(results, data_dir)
    prepare_map(results, data_dir)
    assert results_ready(results, data_dir) and map_path(results, data_dir).is_file()
    assert sorted((p.relative_to(results), p.stat().st_mtime_ns) for p in results.rglob("*")) == before
    data = load_app_data(results, tiny_model, map_path(results, data_dir))
    xy = data.catalogue[["umap_x", "umap_y"]].to_numpy(float)
    assert np.isfinite(xy).all() and np.ptp(xy[:, 0]) > 0


def test_the_app_predicts_a_data_set_again_when_it_or_the_model_changes(small_survey, tmp_path):
    import shutil

    from app.sources import map_path, store_results

    store, model, data_dir = tmp_path / "store", tmp_path / "model", tmp_path / "app-data"
    shutil.copytree(small_survey, store)
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"calibration": {"temperature": 1.0}}))
    first = store_results(store, data_dir, model)
    assert first == store_results(store, data_dir, model) and first.parent == data_dir / "predicted"
    # the server started with a recalibrated (or another) model: predicted again, in another folder
    (model / "model.json").write_text(json.dumps({"calibration": {"temperature": 0.5}}))
    second = store_results(store, data_dir, model)
    # the data set simulated again in the same place (another seed)
    meta = json.loads((store / "dataset.json").read_text())
    (store / "dataset.json").write_text(json.dumps({**meta, "seed": meta["seed"] + 1}))
    assert len({first, second, store_results(store, data_dir, model)}) == 3

    # a results folder only read by the app, predicted again in place: a map of its own
    results = tmp_path / "theirs"
    results.mkdir()
    (results / "results.json").write_text(json.dumps({"model": {"version": "a"}}))
    old_map = map_path(results, data_dir)
    (results / "results.json").write_text(json.dumps({"model": {"version": "b"}}))
    assert map_path(results, data_dir) != old_map and map_path(results, data_dir).parent.parent == data_dir / "maps"


def test_mc_dropout_button_shows_the_spread_of_the_current_object(session):
    dashboard = Dashboard(session)
    dashboard.inspector.__panel__()
    asked = []
    real = dashboard.inspector.page.in_background
    dashboard.inspector.page.in_background = lambda *args, **kwargs: (asked.append(kwargs), real(*args, **kwargs))
    dashboard.inspector._mc_dropout(None)
    assert "MC dropout (20 passes)" in dashboard.inspector.mc_text.object and "±" in dashboard.inspector.mc_text.object
    # the tiny model has no export, so its passes run Keras: on the Keras thread, never on the
    # threads that draw every page's spectra
    assert session.data.model.mc_heads is None and asked == [{"needs_keras": True}]


def test_the_demo_is_made_once_per_model_and_never_shown_with_another(tiny_model, tmp_path):
    import shutil

    from app.demo import build_demo, demo_results
    from app.sources import results_ready
    from mtopnet_core.results import open_results

    steps = []
    results = build_demo(tmp_path / "data", tiny_model, lambda text, fraction: steps.append(fraction), n=64)
    assert results == demo_results(tmp_path / "data", tiny_model) and results_ready(results)
    assert len(open_results(results).catalogue) == 64 and steps == sorted(steps)
    assert build_demo(tmp_path / "data", tiny_model, lambda *_: steps.append(None), n=64) == results
    assert None not in steps  # made once: the second call found it
    # a recalibrated (or another) model: another demo folder, not the old predictions
    other = tmp_path / "recalibrated"
    shutil.copytree(tiny_model, other)
    meta = json.loads((other / "model.json").read_text())
    meta["calibration"] = {**meta.get("calibration", {}), "temperature": 0.5}
    (other / "model.json").write_text(json.dumps(meta))
    assert demo_results(tmp_path / "data", other) != results
    assert not results_ready(demo_results(tmp_path / "data", other))


def test_pdfs_are_read_in_blocks_and_the_kept_ones_bounded():
    from app.data import RowBlocks

    stored = np.arange(1000 * 3, dtype=float).reshape(1000, 3)
    reads = []

    def read(rows: slice) -> np.ndarray:
        reads.append(rows)
        return stored[rows].copy()

    blocks = RowBlocks(read, len(stored), rows_per_block=100, blocks_kept=2)
    for row in (5, 99, 0, 150, 999, 7):
        assert np.array_equal(blocks.row(row), stored[row])
    # rows 5, 99, 0 from one read; 150 a second; 999 a third, which pushes out the least recently used
    # block (rows 0-99, read again for row 7)
    assert reads == [slice(0, 100), slice(100, 200), slice(900, 1000), slice(0, 100)]
    assert len(blocks._blocks) == 2
    with pytest.raises(IndexError):
        blocks.row(1000)


def test_uploads_arrive_in_chunks_and_the_server_enforces_the_limits():
    import base64

    from app.uploader import ChunkedUpload

    uploader = ChunkedUpload(max_bytes=5000, chunk_bytes=1024)
    arrived = []
    uploader.param.watch(lambda event: arrived.append(dict(event.new)), "value")

    def send(drop, name, content, size=None, count=None, skip=()):
        count = count or max(1, -(-len(content) // 1024))
        for index in range(count):
            if index not in skip:
                data = base64.b64encode(content[index * 1024:(index + 1) * 1024]).decode()
                uploader._handle_msg({"drop": drop, "name": name, "index": index, "count": count,
                                      "size": len(content) if size is None else size, "data": data})

    first, second = bytes(range(256)) * 12, b"SIMPLE  =" * 10  # 3 072 bytes in 3 chunks, 90 in one
    send(1, "a.fits", first)
    send(1, "b.fits", second)
    uploader._handle_msg({"drop": 1, "done": True, "names": ["a.fits", "b.fits"],
                          "refused": ["big.fits: File is too large (21.0 MB; the limit is 20.0 MB)"]})
    assert arrived == [{"a.fits": first, "b.fits": second}]
    assert uploader.refused == ["big.fits: File is too large (21.0 MB; the limit is 20.0 MB)"]
    send(2, "a.fits", first)  # the same file again is a new upload
    uploader._handle_msg({"drop": 2, "done": True, "names": ["a.fits"], "refused": []})
    assert arrived[-1] == {"a.fits": first} and len(arrived) == 2

    # a page that lies about sizes, sends damaged data or leaves chunks out gets nothing through
    send(3, "declared_big.fits", first, size=6000)
    send(3, "too_many_bytes.fits", bytes(6000), size=1000, count=6)
    uploader._handle_msg({"drop": 3, "name": "damaged.fits", "index": 0, "count": 1, "size": 10, "data": "@@@"})
    send(3, "gap.fits", first, skip={1})
    uploader._handle_msg({"drop": 3, "done": True, "names": [], "refused": []})
    assert arrived[-1] == {}
    reasons = dict(line.split(": ", 1) for line in uploader.refused)
    assert set(reasons) == {"declared_big.fits", "too_many_bytes.fits", "damaged.fits", "gap.fits"}
    assert reasons["declared_big.fits"] == reasons["too_many_bytes.fits"] == "over the 0.005 MB limit"
    assert reasons["damaged.fits"] == "its upload arrived damaged"
    assert reasons["gap.fits"] == "its upload did not arrive whole"


def test_mc_results_start_the_entropy_slider_at_the_models_cut_for_them(small_survey, tiny_model, tmp_path, capsys):
    """The cut recorded by ``mtopnet calibrate --mc-passes N`` reaches results of N passes, and only those;
    ``mtopnet evaluate --mc-results`` screens them with it."""
    import shutil

    from mtopnet_core.batch import predict_store
    from mtopnet_core.cli import main
    from mtopnet_core.evaluation import catastrophic_among_kept, delta_z
    from mtopnet_core.metrics import ENTROPY_THRESHOLD
    from mtopnet_core.results import open_results

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    meta = json.loads((model / "model.json").read_text())
    meta["calibration"] = {"temperature": 1.0, "mc_screening": {"passes": 3, "catastrophic_target": 0.003,
                                                                "entropy_max": 2.5}}
    (model / "model.json").write_text(json.dumps(meta))
    cuts = {}
    for passes in (0, 3, 4):
        out = tmp_path / f"results{passes}"
        predict_store(small_survey, out, model, mc_passes=passes, workers=1, progress=False)
        cuts[passes] = open_results(out).mc_entropy_cut()
    assert cuts == {0: None, 3: 2.5, 4: None}
    for passes, start in ((3, 2.5), (0, ENTROPY_THRESHOLD)):
        data = load_app_data(tmp_path / f"results{passes}", model)
        session = Session(data, InspectionStore(tmp_path / f"inspections{passes}.sqlite", data.model_version))
        assert session.entropy_max == start
        note = Dashboard(session).screening._mc_note()
        assert ("starts at 2.5" in note.object and "3 passes" in note.object) == (passes == 3)
    # the evaluation screens the MC results at the cut, and says so
    assert main(["evaluate", "--results", str(tmp_path / "results0"), "--out", str(tmp_path / "evaluation"),
                 "--mc-results", str(tmp_path / "results3")]) == 0
    assert "MC dropout, entropy < 2.5" in capsys.readouterr().out
    screening = json.loads((tmp_path / "evaluation" / "summary.json").read_text())["mc_dropout"]["screening"]
    mc = open_results(tmp_path / "results3").catalogue
    kept = mc["entropy"].to_numpy() < 2.5
    assert screening["entropy_max"] == 2.5 and screening["all"]["rejected"] == pytest.approx(1 - kept.mean(), abs=1e-6)
    expected = catastrophic_among_kept(mc["entropy"].to_numpy(), delta_z(mc), 2.5)
    assert (screening["catastrophic_kept"] is None) if np.isnan(expected) else \
        screening["catastrophic_kept"] == pytest.approx(expected, abs=1e-6)


def test_background_work_that_ends_after_its_page_closed_is_dropped_quietly(session, caplog, monkeypatch):
    """A page closed while its work ran (Bokeh destroys its document): the result has nowhere to
    go, and must not become a traceback in the server's log; an open page gets it. Work asked for
    before the page has loaded starts when it loads (a result handed back while Bokeh was still
    setting up the session was lost now and then). Work slower than ``SLOW_WORK_S`` is logged
    with its time."""
    import threading
    import time

    from bokeh.document import Document
    from panel.io.state import set_curdoc

    from app.page import Page

    class Context:  # what a served document has and a bare one lacks
        id = "test-session"

    monkeypatch.setattr("app.page.SLOW_WORK_S", 0.0)
    release = threading.Event()
    for close in (False, True):
        page, document, results = Page(session), Document(), []
        document._session_context = lambda: Context()  # Bokeh keeps the context as a weak reference
        def served(event) -> None:  # the server's session watches its document
            pass
        document.on_change(served)
        release.clear()
        with set_curdoc(document), caplog.at_level("INFO", logger="app.page"):
            started = threading.Event()
            page.in_background(lambda started=started: started.set() or release.wait(5) and "spectrum",
                               results.append, "drawing the spectrum")
            # work asked for while the page is being made waits for it to load (Panel's onload)
            assert not started.wait(0.3)
            pn.state._on_load(document)  # what Panel does once the page has connected
            assert started.wait(5)
            if close:
                document.destroy(served)  # what Bokeh does when the page goes
            release.set()
            for _ in range(100):  # the work's end is handled in its thread
                if close and "after its page was closed" in caplog.text:
                    break
                if not close and document.callbacks.session_callbacks:
                    break
                time.sleep(0.05)
        if close:
            assert "after its page was closed" in caplog.text
            assert "exception calling callback" not in caplog.text and results == []
        else:
            callback = next(iter(document.callbacks.session_callbacks))
            callback.callback()
            assert results == ["spectrum"]
    assert caplog.text.count("drawing the spectrum took") == 2


def test_work_that_waits_for_keras_never_holds_the_threads_that_draw_spectra(session):
    """The first saliency maps of a server wait ~10 s for TensorFlow; spectra asked for meanwhile
    (by any page) are still drawn."""
    import threading

    from bokeh.document import Document
    from panel.io.state import set_curdoc

    from app.page import Page

    class Context:
        id = "test-keras-session"

    page, document = Page(session), Document()
    document._session_context = lambda: Context()
    document.on_change(lambda event: None)
    keras_loaded, spectrum_read = threading.Event(), threading.Event()
    with set_curdoc(document):
        pn.state._on_load(document)  # a loaded page
        for _ in range(3):  # more than the spectrum-drawing threads
            page.in_background(lambda: keras_loaded.wait(10), lambda _: None, "the saliency map", needs_keras=True)
        page.in_background(spectrum_read.set, lambda _: None, "drawing the spectrum")
        try:
            assert spectrum_read.wait(5)
        finally:
            keras_loaded.set()
