"""ESO Phase 3 1D spectra: round trip, strict layout checks, and what foreign files lack."""

import numpy as np
import pytest
from astropy.io import fits

from mtopnet_core import grid
from mtopnet_core.conventions import MASK_BITS
from mtopnet_core.fits_io import (
    FitsLayoutError,
    air_to_vacuum,
    export_dataset_fits,
    read_phase3_spectrum,
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
    spectrum = read_phase3_spectrum(path)
    assert spectrum.object_id == oid and spectrum.issues == []
    flux, error, mask = to_moons_grid(spectrum)
    stored = ds.read(np.array([5]))
    assert np.array_equal(flux, stored["flux"][0]) and np.array_equal(error, stored["error"][0])
    assert np.array_equal(mask, stored["mask"][0])
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
        read_phase3_spectrum(image)
    no_flux = _table_file(tmp_path / "noflux.fits", [("WAVE", "D", "angstrom", wave)])
    with pytest.raises(FitsLayoutError, match="lacks a WAVE or FLUX"):
        read_phase3_spectrum(no_flux)
    rows = _table_file(tmp_path / "rows.fits", [("WAVE", "D", "angstrom", wave), ("FLUX", "E", None, wave)], n_rows=3)
    with pytest.raises(FitsLayoutError, match="3 rows"):
        read_phase3_spectrum(rows)
    backwards = _table_file(tmp_path / "back.fits", [("WAVE", "D", "angstrom", wave[::-1]), ("FLUX", "E", None, wave)])
    with pytest.raises(FitsLayoutError, match="strictly increasing"):
        read_phase3_spectrum(backwards)
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"SIMPLE  = T" + b"\0" * 100)
    with pytest.raises(FitsLayoutError, match="junk.fits"):
        read_phase3_spectrum(junk)
    truncated = tmp_path / "truncated.fits"
    good = write_phase3_spectrum(tmp_path / "good.fits", np.ones(12217), np.ones(12217), np.zeros(12217), "g")
    truncated.write_bytes(good.read_bytes()[:50000])
    with pytest.raises(FitsLayoutError, match="truncated.fits"):
        read_phase3_spectrum(truncated)
    with pytest.raises(FileNotFoundError):
        read_phase3_spectrum(tmp_path / "missing.fits")


def test_a_file_from_another_instrument_says_what_it_lacks(tmp_path):
    wave_air_nm = np.linspace(900.0, 1300.0, 4000)  # nm, air, no error column
    flux = np.full(wave_air_nm.size, 2e-17)
    path = _table_file(tmp_path / "other.fits",
                       [("WAVE", "D", "nm", wave_air_nm), ("FLUX", "E", "erg/(s cm2 Angstrom)", flux)],
                       ucd_wave="em.wl;obs.atmos", primary_cards={"OBJECT": "gal-42"})
    spectrum = read_phase3_spectrum(path)
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
    _, _, mask = to_moons_grid(read_phase3_spectrum(path))
    assert mask[100] & MASK_BITS["bad_value"] and mask[101] == 0
