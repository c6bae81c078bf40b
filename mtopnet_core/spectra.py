"""The spectrum container: what every step from reading to the app passes around.

:class:`Spectra` holds N spectra on the MOONS grid with what the preprocessing needs beside the
flux: the 1-sigma error, the quality bits (:data:`~mtopnet_core.conventions.MASK_BITS`, 0 =
good), the sky model the channel mask is taken from, the wavelengths and the object IDs. It is
frozen: operations return a new container (``spectra[rows]``), as in specutils and redrock.
The store (:meth:`mtopnet_core.store.Dataset.spectra`) and the FITS reader
(:func:`mtopnet_core.fits_io.read_fits_batch`) make it; preprocessing, prediction, saliency and
the app take it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mtopnet_core import grid

__all__ = ["Spectra"]


@dataclass(frozen=True)
class Spectra:
    """N spectra on the MOONS grid.

    Attributes
    ----------
    flux : numpy.ndarray, shape (N, 12217), float32
        1e-17 erg/s/cm^2/A. A single spectrum of shape (12217,) is taken as N = 1.
    sky : numpy.ndarray, shape (12217,)
        Sky model of the observations, photons/s/cm^2/A/arcsec^2 (the preprocessing masks
        channels where it is bright).
    error : numpy.ndarray or None, shape (N, 12217)
        1-sigma error, same unit as ``flux``; None when unknown.
    mask : numpy.ndarray or None, shape (N, 12217), integer
        Quality bits, 0 = good (uint8 from the store and the FITS reader); None when the data
        carry none.
    names : tuple of str, length N
        Object IDs (default "spectrum 0", "spectrum 1", ...).
    wavelength : numpy.ndarray, shape (12217,)
        Pixel-centre vacuum wavelengths, Angstrom (default: the MOONS grid).

    Raises
    ------
    ValueError
        If the arrays are not on the MOONS grid or disagree in shape.
    """

    flux: np.ndarray
    sky: np.ndarray
    error: np.ndarray | None = None
    mask: np.ndarray | None = None
    names: Sequence[str] = ()
    wavelength: np.ndarray = field(default_factory=lambda: np.asarray(grid.wavelength_grid()))

    def __post_init__(self) -> None:
        flux = np.atleast_2d(np.asarray(self.flux, dtype=np.float32))
        sky = np.asarray(self.sky)
        if flux.ndim != 2 or flux.shape[1] != grid.N_CHANNELS or sky.shape != (grid.N_CHANNELS,):
            raise ValueError(f"spectra have {flux.shape[-1]} channels and the sky model {sky.shape}; "
                             f"the MOONS grid has {grid.N_CHANNELS}")
        set_field = object.__setattr__  # frozen: the checked, converted arrays replace the given ones
        set_field(self, "flux", flux)
        set_field(self, "sky", sky)
        for label in ("error", "mask"):
            array = getattr(self, label)
            if array is None:
                continue
            # kept in their own type: quality bits beyond 8 must never wrap to 0 ("good")
            array = np.atleast_2d(np.asarray(array))
            if array.shape != flux.shape:
                raise ValueError(f"{label} array has shape {array.shape}, flux {flux.shape}")
            set_field(self, label, array)
        names = tuple(str(name) for name in self.names) or tuple(f"spectrum {i}" for i in range(len(flux)))
        if len(names) != len(flux):
            raise ValueError(f"{len(names)} names for {len(flux)} spectra")
        set_field(self, "names", names)

    def __len__(self) -> int:
        return len(self.flux)

    def __getitem__(self, rows: int | slice | np.ndarray | Sequence[int]) -> Spectra:
        """The spectra at ``rows`` (an int keeps one spectrum, as a container of length 1)."""
        index = np.arange(len(self))[rows]
        index = np.atleast_1d(index)
        return Spectra(flux=self.flux[index], sky=self.sky,
                       error=None if self.error is None else self.error[index],
                       mask=None if self.mask is None else self.mask[index],
                       names=tuple(self.names[i] for i in index), wavelength=self.wavelength)
