"""ESO Phase 3 1D spectra: round trip, strict layout checks, and what foreign files lack."""

import io

import numpy as np
import pytest
from astropy.io import fits

from mtopnet_core import grid
from mtopnet_core.conventions import MASK_BITS
from mtopnet_core.fits_io import (
    FitsLayoutError,
    air_to_vacuum,
    export_dataset_fits,
    read_fits_spectrum,
    to_moons_grid,
    write_phase3_spectrum,
)
from mtopnet_core.store import open_dataset


def _table_file(path, columns, n_rows=1, ucd_wave=None, primary_cards=None):
    cols = [fits.Column(name, format=f"{arr.shape[-1]}{fmt}", unit=unit,
                        array=np.repeat(arr[None, :], n_rows, axis=0))
            for name, fmt, unit, arr in columns]
    table = fits.BinTableHDU.from_columns(cols)
    if ucd_wave:
        table.header["TUCD1"] = ucd_wave
    primary = fits.PrimaryHDU()
    for key, value in (primary_cards or {}).items():
        primary.header[key] = value
    fits.HDUList([primary, table]).writeto(path)
    return path


def test_round_trip_of_an_exported_mock_spectrum(small_survey, tmp_path):
    ds = open_dataset(small_survey)
    oid = ds.catalogue["object_id"].iloc[5]
    (path,) = export_dataset_fits(small_survey, tmp_path, ids=[oid])
    spectrum = read_fits_spectrum(path)
    assert spectrum.object_id == oid and spectrum.issues == []
    flux, error, mask = to_moons_grid(spectrum)
    stored = ds.read(np.array([5]))
    assert np.array_equal(flux, stored["flux"][0]) and np.array_equal(error, stored["error"][0])
    assert np.array_equal(mask, stored["mask"][0])
    with fits.open(path) as hdus:  # a valid FITS file, whose row astropy reads as written
        hdus.verify("exception")
        assert [h.name for h in hdus] == ["PRIMARY", "SPECTRUM"] and hdus[0].header["EXTEND"]
        assert np.array_equal(hdus[1].data["FLUX"][0], stored["flux"][0])
        assert np.array_equal(hdus[1].data["QUAL"][0], stored["mask"][0])
        assert np.array_equal(hdus[1].data["WAVE"][0], grid.wavelength_grid())
        rewritten = io.BytesIO()
        hdus.writeto(rewritten)
    assert rewritten.getvalue() == path.read_bytes()  # the bytes astropy's writer gives
    with pytest.raises(FileExistsError, match=r"\.fits: already exists \(overwrite replaces it\)"):
        export_dataset_fits(small_survey, tmp_path, ids=[oid])
    export_dataset_fits(small_survey, tmp_path, ids=[oid], overwrite=True)
    header = fits.getheader(path, 0)
    assert header["PRODCATG"] == "SCIENCE.SPECTRUM"
    assert header["HIERARCH MTOPNET TRUE Z"] == pytest.approx(ds.catalogue["z"].iloc[5])
    assert fits.getheader(path, 1)["TUCD1"] == "em.wl"  # vacuum
    with pytest.raises(ValueError, match="not in the data set"):
        export_dataset_fits(small_survey, tmp_path, ids=["NOPE-1"])


def test_layout_errors_name_the_file_and_the_problem(tmp_path):
    wave = np.linspace(7000, 9000, 50)
    image = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros(10)).writeto(image)
    with pytest.raises(FitsLayoutError, match=r"image\.fits: no binary-table extension"):
        read_fits_spectrum(image)
    no_flux = _table_file(tmp_path / "noflux.fits", [("WAVE", "D", "angstrom", wave)])
    with pytest.raises(FitsLayoutError, match="lacks a WAVE .* or FLUX"):
        read_fits_spectrum(no_flux)
    rows = _table_file(tmp_path / "rows.fits", [("WAVE", "D", "angstrom", wave), ("FLUX", "E", None, wave)], n_rows=3)
    with pytest.raises(FitsLayoutError, match="3 rows"):
        read_fits_spectrum(rows)
    backwards = _table_file(tmp_path / "back.fits", [("WAVE", "D", "angstrom", wave[::-1]), ("FLUX", "E", None, wave)])
    with pytest.raises(FitsLayoutError, match="strictly increasing"):
        read_fits_spectrum(backwards)
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"SIMPLE  = T" + b"\0" * 100)
    with pytest.raises(FitsLayoutError, match="junk.fits"):
        read_fits_spectrum(junk)
    truncated = tmp_path / "truncated.fits"
    good = write_phase3_spectrum(tmp_path / "good.fits", np.ones(12217), np.ones(12217), np.zeros(12217), "g")
    # a cut file, in the header or in the data: one line for an astronomer, no astropy notes or hints
    for cut in (50000, 4000):
        truncated.write_bytes(good.read_bytes()[:cut])
        with pytest.raises(FitsLayoutError, match=r"truncated\.fits: .*the file is truncated or damaged") as caught:
            read_fits_spectrum(truncated)
        message = str(caught.value)
        assert "\n" not in message and "Astropy" not in message and "There may be" not in message
        assert " 0.0 MB" not in message
    with pytest.raises(FileNotFoundError):
        read_fits_spectrum(tmp_path / "missing.fits")


def test_a_file_from_another_instrument_says_what_it_lacks(tmp_path):
    wave_air_nm = np.linspace(900.0, 1300.0, 4000)  # nm, air, no error column
    flux = np.full(wave_air_nm.size, 2e-17)
    path = _table_file(tmp_path / "other.fits",
                       [("WAVE", "D", "nm", wave_air_nm), ("FLUX", "E", "erg/(s cm2 Angstrom)", flux)],
                       ucd_wave="em.wl;obs.atmos", primary_cards={"OBJECT": "gal-42"})
    spectrum = read_fits_spectrum(path)
    text = "; ".join(spectrum.issues)
    assert "no error array" in text and "air wavelengths" in text and "of the MOONS grid" in text
    assert spectrum.object_id == "gal-42"
    assert spectrum.wave[0] == pytest.approx(air_to_vacuum(9000.0))
    assert air_to_vacuum(6562.8) == pytest.approx(6564.6, abs=0.05)  # Halpha, air -> vacuum
    flux_g, error_g, mask = to_moons_grid(spectrum)
    assert np.allclose(flux_g[(mask & MASK_BITS["no_coverage"]) == 0], 2.0)  # -> 1e-17 units
    outside = (grid.wavelength_grid() < spectrum.wave[0]) | (grid.wavelength_grid() > spectrum.wave[-1])
    assert np.array_equal((mask & MASK_BITS["no_coverage"]) > 0, outside)
    assert np.all(np.isnan(error_g[~outside]))


def test_non_finite_values_are_flagged(tmp_path):
    flux = np.ones(12217)
    flux[100] = np.nan
    path = write_phase3_spectrum(tmp_path / "nan.fits", flux, np.ones(12217), np.zeros(12217), "n")
    _, _, mask = to_moons_grid(read_fits_spectrum(path))
    assert mask[100] & MASK_BITS["bad_value"] and mask[101] == 0


def test_sdss_spec_lite_and_plain_pixel_tables_are_read(tmp_path):
    """SDSS spec-lite: loglam, flux (1e-17), ivar, and_mask, one pixel per row; a plain WAVE/FLUX/ERR table too."""
    loglam = np.arange(3.5800, 4.0170, 1e-4)  # 3802-10399 A, SDSS's grid
    flux = 3.0 + np.sin(loglam * 1000)
    ivar = np.full(loglam.size, 4.0)
    ivar[500] = 0.0  # a pixel without data
    and_mask = np.zeros(loglam.size, np.int32)
    and_mask[900] = 1 << 23
    coadd = fits.BinTableHDU.from_columns([
        fits.Column("flux", "E", array=flux), fits.Column("loglam", "E", array=loglam),
        fits.Column("ivar", "E", array=ivar), fits.Column("and_mask", "J", array=and_mask)], name="COADD")
    path = tmp_path / "spec-1234-56789-0042.fits"
    fits.HDUList([fits.PrimaryHDU(), coadd]).writeto(path)
    spectrum = read_fits_spectrum(path)
    assert spectrum.object_id == "spec-1234-56789-0042"
    assert spectrum.wave[0] == pytest.approx(10**3.58, rel=1e-6) and spectrum.flux[10] == pytest.approx(flux[10])
    assert spectrum.error[0] == pytest.approx(0.5) and not np.isfinite(spectrum.error[500])
    assert spectrum.qual[500] != 0 and spectrum.qual[900] != 0 and spectrum.qual[901] == 0
    assert not any("flux unit" in issue for issue in spectrum.issues)  # SDSS's unit is known
    assert any("of the MOONS grid" in issue for issue in spectrum.issues)

    wave = np.linspace(6400.0, 18000.0, 3000)
    plain = fits.BinTableHDU.from_columns([
        fits.Column("WAVE", "D", unit="Angstrom", array=wave),
        fits.Column("FLUX", "E", unit="1e-17 erg/(s cm2 Angstrom)", array=np.ones(wave.size)),
        fits.Column("ERR", "E", unit="1e-17 erg/(s cm2 Angstrom)", array=np.full(wave.size, 0.1))])
    fits.HDUList([fits.PrimaryHDU(), plain]).writeto(tmp_path / "plain.fits")
    spectrum = read_fits_spectrum(tmp_path / "plain.fits")
    assert spectrum.wave.size == 3000 and spectrum.issues == [] and np.allclose(spectrum.error, 0.1)


def test_quality_flags_survive_resampling(tmp_path):
    wave = np.linspace(6000.0, 18500.0, 5000)  # not the MOONS grid
    qual = np.zeros(wave.size, np.int32)
    flagged = [1000, 2000, 2001, 3500, 4200]
    qual[flagged] = 2
    path = _table_file(tmp_path / "q.fits", [("WAVE", "D", "angstrom", wave), ("FLUX", "E", None, np.ones(wave.size)),
                                              ("ERR", "E", None, np.ones(wave.size)), ("QUAL", "J", None, qual)])
    _, _, mask = to_moons_grid(read_fits_spectrum(path))
    moons = grid.wavelength_grid()
    marked = (mask & MASK_BITS["flagged_input"]) > 0
    for pixel in flagged:  # every flagged input pixel reaches the channels made from it
        near = (moons > wave[pixel - 1]) & (moons < wave[pixel + 1])
        assert near.any() and marked[near].all(), pixel
    assert marked.mean() < 0.05  # and not much else


def test_size_bombs_are_refused_before_their_data_is_read(tmp_path):
    """A small gzip file announcing a huge column, and one that inflates past the limit, never fill the memory."""
    import gzip
    import resource

    n = 64_000_000  # 64 million float32 per column: 256 MB each once read
    header = fits.BinTableHDU.from_columns([fits.Column("WAVE", f"{n}E"), fits.Column("FLUX", f"{n}E")],
                                           nrows=0).header
    header["NAXIS2"] = 1
    lying = tmp_path / "lying.fits.gz"
    primary = fits.PrimaryHDU().header.tostring().encode()
    table = header.tostring().encode()
    lying.write_bytes(gzip.compress(primary + table + b"\0" * 2880 * 10))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(FitsLayoutError, match="announce"):
        read_fits_spectrum(lying)
    bomb = tmp_path / "bomb.fits.gz"
    bomb.write_bytes(gzip.compress(primary + b"\0" * 80_000_000, compresslevel=1))
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(FitsLayoutError, match="decompresses to more than"):
        read_fits_spectrum(bomb, max_bytes=10_000_000)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, grown_mb
    with pytest.raises(FitsLayoutError, match="over the 1 MB limit"):
        read_fits_spectrum(bytes(2_000_000), name="upload.fits", max_bytes=1_000_000)


def test_files_are_read_one_at_a_time(tmp_path, monkeypatch):
    """astropy's warnings are made errors by ``warnings.catch_warnings``, which is process-wide:
    two threads reading at once (the app's sessions) would undo each other's filters, and a
    damaged file could pass. Both readers (NumPy's for plain tables, astropy's) parse headers."""
    from mtopnet_core import fits_io

    held, real_parse = [], fits.Header.fromstring

    def watched_parse(*args, **kwargs):
        held.append(fits_io._READING.locked())
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(fits.Header, "fromstring", watched_parse)
    path = write_phase3_spectrum(tmp_path / "s.fits", np.ones(12217), np.ones(12217), np.zeros(12217), "s")
    assert read_fits_spectrum(path).object_id == "s"
    assert held and all(held)


def _read_by_astropy(monkeypatch, path):
    """The spectrum as astropy's HDU objects read it (the plain-table reader turned off)."""
    from mtopnet_core import fits_io

    with monkeypatch.context() as patch:
        patch.setattr(fits_io, "plain_table", lambda *args, **kwargs: None)
        return read_fits_spectrum(path)


def _same_spectrum(a, b):
    assert (a.object_id, a.issues) == (b.object_id, b.issues)
    for name in ("wave", "flux", "error", "qual"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
    assert list(a.header.items()) == list(b.header.items())


def test_plain_tables_are_read_without_astropys_hdus_and_as_astropy_reads_them(tmp_path, monkeypatch):
    """Phase 3 spectra, pixel tables of every fixed-width type and SDSS-like tables are read by
    NumPy (``fits.open`` is never called) and give what astropy's reader gives."""
    from mtopnet_core import fits_io

    rng = np.random.default_rng(3)
    flux = rng.normal(1, 0.3, 12217)
    qual = (rng.random(12217) < 0.02).astype(np.int32) * 4
    phase3 = write_phase3_spectrum(tmp_path / "p3.fits", flux, np.full(12217, 0.2), qual, "obj-1",
                                   extra={"AIRORVAC": "vac"})
    wave = np.linspace(6500.0, 17000.0, 800)
    values = {"B": rng.integers(0, 3, 800).astype(np.uint8), "I": rng.integers(0, 9, 800).astype(np.int16),
              "J": rng.integers(0, 9, 800).astype(np.int32), "K": rng.integers(0, 9, 800).astype(np.int64)}
    pixels = []
    for letter, qual_values in values.items():  # one pixel per row, the quality column in each integer type
        path = tmp_path / f"pix{letter}.fits"
        fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns([
            fits.Column("wave", "D", unit="Angstrom", array=wave),
            fits.Column("FLUX", "E", unit="1e-17 erg/(s cm2 Angstrom)", array=rng.normal(1, 0.1, 800)),
            fits.Column("IVAR", "E", array=rng.uniform(0, 4, 800)),
            fits.Column("QUAL", letter, array=qual_values)])]).writeto(path)
        pixels.append(path)
    read_by_numpy = {}
    with monkeypatch.context() as patch:
        patch.setattr(fits_io.fits, "open", lambda *a, **k: pytest.fail("astropy opened a plain table"))
        for path in (phase3, *pixels):
            read_by_numpy[path] = read_fits_spectrum(path)
    for path, spectrum in read_by_numpy.items():
        _same_spectrum(spectrum, _read_by_astropy(monkeypatch, path))
    assert np.array_equal(read_by_numpy[phase3].flux, flux.astype(np.float32))
    assert np.array_equal(read_by_numpy[phase3].qual, qual)
    assert read_by_numpy[phase3].keyword("AIRORVAC") == "vac" and read_by_numpy[phase3].header["NELEM"] == 12217
    assert read_by_numpy[pixels[1]].qual.tolist() == values["I"].tolist()


def test_tables_that_are_not_plain_are_left_to_astropy(tmp_path):
    """Scaled columns, a heap, string columns, and a spectrum table after an image are read by
    astropy (``plain_table`` declines them), with the values astropy gives."""
    from mtopnet_core.fits_io import _walk_hdus
    from mtopnet_core.fits_tables import plain_table

    wave = np.linspace(6500.0, 17000.0, 300)
    columns = [fits.Column("WAVE", "300D", array=wave[None]), fits.Column("FLUX", "300E", array=np.ones((1, 300))),
               fits.Column("ERR", "300E", array=np.ones((1, 300)))]
    scaled = fits.BinTableHDU.from_columns([fits.Column("WAVE", "300D", array=wave[None]),
                                            fits.Column("FLUX", "300J", array=np.full((1, 300), 12, np.int32)),
                                            fits.Column("ERR", "300E", array=np.ones((1, 300)))])
    scaled.header["TSCAL2"], scaled.header["TZERO2"] = 0.5, 10.0  # stored 12 -> 16
    heap = fits.BinTableHDU.from_columns([*columns, fits.Column("NOTE", "PB()", array=[np.arange(5, dtype=np.uint8)])])
    text = fits.BinTableHDU.from_columns([*columns, fits.Column("NAME", "8A", array=["galaxy"])])
    files = {"scaled": [fits.PrimaryHDU(), scaled], "heap": [fits.PrimaryHDU(), heap],
             "text": [fits.PrimaryHDU(), text],
             "after_an_image": [fits.PrimaryHDU(), fits.ImageHDU(np.zeros(4)), fits.BinTableHDU.from_columns(columns)]}
    for name, hdus in files.items():
        path = tmp_path / f"{name}.fits"
        fits.HDUList(hdus).writeto(path)
        content = path.read_bytes()
        layout = _walk_hdus(content, name)
        assert plain_table(layout[1][0], content, layout[1][1]) is None, name
        spectrum = read_fits_spectrum(path)
        assert np.allclose(spectrum.wave, wave) and np.array_equal(spectrum.error, np.ones(300)), name
        assert np.allclose(spectrum.flux, 16.0 if name == "scaled" else 1.0), name


def test_files_sharing_a_table_header_reuse_its_layout_but_keep_their_own_header(tmp_path, monkeypatch):
    """A survey's files share their table's header byte for byte: its layout and data size are
    worked out once (astropy's keyword lookups cost ~0.3 ms a file), while every spectrum keeps a
    header of its own, another table header gets its own layout, and every file's size is checked."""
    from mtopnet_core import fits_io, fits_tables

    fits_tables._layout_of_text.cache_clear()
    fits_io._extension_data_bytes.cache_clear()
    layouts, real_layout = [], fits_tables.plain_layout
    monkeypatch.setattr(fits_tables, "plain_layout", lambda header: layouts.append(header) or real_layout(header))
    rng = np.random.default_rng(5)
    fluxes = rng.normal(1, 0.3, (2, 12217))
    first, second = (write_phase3_spectrum(tmp_path / f"{name}.fits", flux, np.full(12217, 0.2), np.zeros(12217), name)
                     for name, flux in zip("ab", fluxes, strict=True))
    a, b = read_fits_spectrum(first), read_fits_spectrum(second)
    assert len(layouts) == 1 and fits_io._extension_data_bytes.cache_info().hits == 1
    assert np.array_equal(b.flux, fluxes[1].astype(np.float32)) and b.object_id == "b"
    assert a.table_header is not b.table_header
    a.table_header["EXTNAME"] = "CHANGED"
    assert b.table_header["EXTNAME"] != "CHANGED"

    wave = np.linspace(9000.0, 12000.0, 300)
    short = write_phase3_spectrum(tmp_path / "short.fits", np.arange(300.0), np.ones(300), np.zeros(300), "c",
                                  wave=wave)
    c = read_fits_spectrum(short)
    assert len(layouts) == 2 and np.array_equal(c.flux, np.arange(300.0)) and np.allclose(c.wave, wave)

    cut = tmp_path / "cut.fits"
    cut.write_bytes(second.read_bytes()[:50000])  # b's table header, a tenth of its data
    with pytest.raises(FitsLayoutError, match=r"cut\.fits: .*the file is truncated or damaged"):
        read_fits_spectrum(cut)

    with fits.open(second) as hdus:  # a table header longer than any kept (an upload could hold megabytes)
        for i in range(fits_tables.CACHED_HEADER_CHARS // 80):
            hdus[1].header.add_comment(f"note {i}")
        hdus.writeto(tmp_path / "long.fits")
    def kept():
        return fits_tables._layout_of_text.cache_info().currsize, fits_io._extension_data_bytes.cache_info().currsize

    before = kept()
    assert np.array_equal(read_fits_spectrum(tmp_path / "long.fits").flux, b.flux) and len(layouts) == 3
    assert kept() == before == (2, 2)
