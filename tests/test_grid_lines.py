import numpy as np
import pytest

from mtopnet_core import grid
from mtopnet_core.lines import TABLE1_LINES, line_wavelengths, lines_in_range


def test_moons_grid_matches_the_paper():
    wave = grid.wavelength_grid()
    assert wave.shape == (12217,) == (grid.N_CHANNELS,)
    assert wave[0] == pytest.approx(6400.0) and wave[-1] == pytest.approx(18000.0)
    assert np.all(np.diff(wave) > 0)
    # the only big jump is the 1.35-1.45 micron gap between YJ and H
    jumps = np.diff(wave)
    big = np.flatnonzero(jumps > 10)
    assert big.size == 1 and wave[big[0]] == pytest.approx(13500) and wave[big[0] + 1] == pytest.approx(14500)
    assert [c.n_pixels for c in grid.CHANNELS] == [4075, 4071, 4071]


def test_pixels_tile_each_channel_without_overlap():
    lower, upper = grid.pixel_edges()
    assert np.all(upper > lower)
    assert np.all(lower[1:] >= upper[:-1] - 1e-9)
    # about 2.7 pixels per resolution element (FWHM = lambda / R)
    sampling = grid.wavelength_grid() / grid.resolving_power() / grid.pixel_widths()
    assert 2.0 < sampling.min() and sampling.max() < 3.5


def test_channel_slices_and_segments_split_the_grid_where_the_hardware_does():
    wave = grid.wavelength_grid()
    channels = grid.channel_slices()
    assert [part.stop - part.start for part in channels] == [c.n_pixels for c in grid.CHANNELS]
    assert channels[0].start == 0 and channels[-1].stop == grid.N_CHANNELS
    assert all(a.stop == b.start for a, b in zip(channels[:-1], channels[1:], strict=True))
    for channel, part in zip(grid.CHANNELS, channels, strict=True):
        assert wave[part][0] == pytest.approx(channel.start) and wave[part][-1] == pytest.approx(channel.stop)
    assert np.array_equal(grid.channel_index()[channels[1]], np.ones(channels[1].stop - channels[1].start))
    # RI and YJ meet; H lies beyond the gap
    first, second = grid.contiguous_segments()
    assert (first.start, first.stop, second.stop) == (0, channels[1].stop, grid.N_CHANNELS)
    assert wave[second.start] - wave[first.stop - 1] > 500


def test_grid_fingerprint_detects_a_change():
    wave = np.array(grid.wavelength_grid())
    assert grid.grid_fingerprint(wave) == grid.grid_fingerprint()
    wave[100] += 0.01
    assert grid.grid_fingerprint(wave) != grid.grid_fingerprint()


def test_redshift_bins():
    centres, edges = grid.redshift_bin_centres(), grid.redshift_bin_edges()
    assert centres.shape == (800,) and edges.shape == (801,)
    assert np.allclose(np.diff(edges), 0.003)
    assert edges[0] == pytest.approx(0.7) and edges[-1] == pytest.approx(3.1)
    assert np.array_equal(grid.redshift_to_bin(centres), np.arange(800))
    with pytest.raises(ValueError, match="outside the binned range"):
        grid.redshift_to_bin([1.0, 3.2])


def test_table1_as_printed():
    waves = line_wavelengths()
    assert len(TABLE1_LINES) == waves.size == 42
    named = {(line.name, line.wavelength) for line in TABLE1_LINES}
    for expected in [("H α", 6564.6), ("H β", 4862.7), ("[O III]", 5008.2), ("[O II]", 3727.1),
                     ("Ly α", 1215.2), ("He I", 10830.3), ("Mg I", 5183.0), ("[S III]", 9532.0)]:
        assert expected in named
    found = dict((line.name, obs) for line, obs in lines_in_range(1.0, 6400, 18000))
    assert found["H α"] == pytest.approx(13129.2)
    assert "Ly α" not in found
