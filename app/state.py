"""One browser session's state: current object, selection, thresholds, inspection queue.

Plain ``param`` logic, no widgets, so that it is tested without a browser. Objects are named
by their string IDs everywhere (never by table positions, which change with sorting and
filtering). Screening numbers come from :mod:`mtopnet_core.evaluation`.
"""

from __future__ import annotations

import math
import operator
import re

import numpy as np
import pandas as pd
import param

from mtopnet_core import grid
from mtopnet_core.evaluation import SUCCESS_THRESHOLD, SUCCESS_THRESHOLDS, flagged, screening_curve, screening_summary
from mtopnet_core.metrics import ENTROPY_THRESHOLD, SKEWNESS_THRESHOLD, pdf_peaks, screen

from .data import AppData
from .inspections import InspectionStore

__all__ = ["Session", "QUEUES", "parse_conditions"]

QUEUES = ("failed redshifts", "screened out", "selection", "inspectors disagree", "all")
_COMPARISONS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
                ">": operator.gt}
_CONDITION = re.compile(r"^\s*([A-Za-z_]\w*)\s*(<=|>=|==|!=|<|>)\s*"
                        r"(?:([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|'([^']*)'|\"([^\"]*)\"|([A-Za-z][\w-]*))\s*$")
_EXAMPLE = "write e.g. 'abs_dz >= 0.01, m_h < 24, galaxy_class == quiescent'"


def parse_conditions(text: str, columns: dict[str, pd.Series]) -> list[tuple[str, str, float | str]]:
    """Read conditions such as ``"abs_dz >= 0.01, m_h < 24, galaxy_class == quiescent"``.

    Conditions are separated by commas, ``and`` or ``&``; each is ``column op value`` with op one
    of < <= > >= == !=. A numeric column takes a number; a text column (such as the galaxy
    class) takes == or != and a word or a quoted text. Nothing else is evaluated (the text comes
    from the page).

    Parameters
    ----------
    text : str
        What was typed.
    columns : dict of str to pandas.Series
        The columns that may be named, by name.

    Returns
    -------
    list of (column, op, value)
        ``value`` is a float for a numeric column, else a str.

    Raises
    ------
    ValueError
        One line naming the condition that cannot be read, the unknown column, or a value of
        the wrong kind (with the text column's values).
    """
    conditions = []
    for part in filter(str.strip, re.split(r",|&|\band\b", text)):
        match = _CONDITION.match(part)
        if match is None:
            raise ValueError(f"rows where: cannot read {part.strip()!r}; {_EXAMPLE}")
        name, op, number, *words = match.groups()
        word = next((w for w in words if w is not None), None)
        if name not in columns:
            raise ValueError(f"rows where: no column {name!r} (columns: {', '.join(columns)})")
        column = columns[name]
        if pd.api.types.is_numeric_dtype(column) and not isinstance(column.dtype, pd.CategoricalDtype):
            if number is None:
                raise ValueError(f"rows where: {name} is a number; compare it with a number, not {word!r}")
            conditions.append((name, op, float(number)))
            continue
        values = sorted(map(str, column.dropna().unique()))
        shown = ", ".join(values[:8]) + (", ..." if len(values) > 8 else "")
        if op not in ("==", "!="):
            raise ValueError(f"rows where: {name} is text; use == or != with one of: {shown}")
        value = number if word is None else word
        if value not in values:
            raise ValueError(f"rows where: no {name} is {value!r} (values: {shown})")
        conditions.append((name, op, value))
    return conditions


SCREENING_RANGES: dict[str, tuple[float, float]] = {
    "entropy": (0.0, float(math.ceil(math.log(grid.N_Z_BINS)))),  # a flat PDF has ln(800) = 6.7
    "skewness": (0.0, 30.0),  # past the paper's threshold of 20
}
"""Ranges of the screening sliders and of the histograms they sit on."""


class Session(param.Parameterized):
    """State of one session over an :class:`~app.data.AppData`."""

    current = param.String(default="", doc="object ID shown in the inspector")
    selection = param.List(default=[], item_type=str, doc="object IDs selected in the map or table")
    queue_kind = param.Selector(default=QUEUES[0], objects=list(QUEUES))
    use_entropy = param.Boolean(default=True)
    entropy_max = param.Number(default=ENTROPY_THRESHOLD, bounds=SCREENING_RANGES["entropy"], step=0.05)
    use_skewness = param.Boolean(default=False)
    use_flags = param.Boolean(default=True, doc="screen out predictions outside the model's training domain")
    skewness_min = param.Number(default=SKEWNESS_THRESHOLD, bounds=SCREENING_RANGES["skewness"], step=0.5)
    dz_threshold = param.Selector(default=SUCCESS_THRESHOLD, objects=list(SUCCESS_THRESHOLDS))
    display_z = param.Number(default=None, allow_None=True, doc="redshift of the line markers")
    inspector = param.String(default="")
    catalogue_version = param.Integer(default=0, doc="bumped when rows are added (uploads)")
    inspection_version = param.Integer(default=0, doc="bumped when an inspection is saved")

    def __init__(self, data: AppData, inspections: InspectionStore, **params) -> None:
        # MC-dropout results start at the entropy cut the model's calibration chose for them
        cut = data.results.mc_entropy_cut()
        if cut is not None and "entropy_max" not in params:
            params["entropy_max"] = cut
        super().__init__(**params)
        self.data, self.inspections = data, inspections
        if not self.current and len(self.queue()):
            self.current = self.queue()[0]
        elif not self.current and len(data.catalogue):
            self.current = str(data.catalogue["object_id"].iloc[0])

    # --- screening -------------------------------------------------------------------------
    @property
    def has_truth(self) -> bool:
        return "z_true" in self.data.catalogue and bool(np.isfinite(self.data.catalogue["z_true"]).any())

    def kept(self, entropy_cut: bool = True) -> np.ndarray:
        """Which objects pass the screening thresholds (bool per catalogue row); with
        ``entropy_cut`` False, every cut in use but the entropy's."""
        cat = self.data.catalogue
        kept = screen(cat["entropy"].to_numpy(float), cat["skewness"].to_numpy(float),
                      self.entropy_max if self.use_entropy and entropy_cut else None,
                      self.skewness_min if self.use_skewness else None) & np.isfinite(cat["z_peak"].to_numpy(float))
        if self.use_flags:
            kept &= ~flagged(cat)
        return kept

    def success(self) -> np.ndarray:
        """|Delta z| below the threshold (bool per row; False without truth)."""
        return self.data.catalogue.get("abs_dz", pd.Series(np.nan, index=self.data.catalogue.index)) \
            .to_numpy(float) < self.dz_threshold

    def screening_numbers(self) -> pd.DataFrame:
        """Accuracy before/after, rejected and false-rejection fractions per exposure time."""
        cat = self.data.catalogue
        if not self.has_truth:
            return pd.DataFrame()
        truth = cat[np.isfinite(cat["z_true"].to_numpy(float))]
        return screening_summary(truth, self.entropy_max if self.use_entropy else None,
                                 self.skewness_min if self.use_skewness else None, self.dz_threshold,
                                 drop_flagged=self.use_flags)

    def completeness_curve(self) -> pd.DataFrame:
        """Accuracy against completeness as the entropy threshold moves, the other cuts held
        (skewness and flags, where used), over the objects with truth; so the current screening
        is a point of the curve."""
        cat = self.data.catalogue
        truth = np.isfinite(cat.get("z_true", pd.Series(np.nan, index=cat.index)).to_numpy(float))
        entropy = np.where(self.kept(entropy_cut=False), cat["entropy"].to_numpy(float), np.nan)
        return screening_curve(entropy[truth], self.success()[truth])

    # --- queue and navigation --------------------------------------------------------------
    def queue(self) -> list[str]:
        """Object IDs of the current queue, in catalogue order."""
        cat = self.data.catalogue
        ids = cat["object_id"].astype(str)
        if self.queue_kind == "failed redshifts" and self.has_truth:
            return ids[(cat["abs_dz"].to_numpy(float) >= self.dz_threshold)
                       | ~np.isfinite(cat["z_peak"].to_numpy(float))].tolist()
        if self.queue_kind == "failed redshifts":
            return ids[~np.isfinite(cat["z_peak"].to_numpy(float))].tolist()
        if self.queue_kind == "screened out":
            return ids[~self.kept()].tolist()
        if self.queue_kind == "selection":
            known = set(ids)
            return [i for i in self.selection if i in known]
        if self.queue_kind == "inspectors disagree":
            return ids[ids.isin(set(self.conflicts()["object_id"]))].tolist()
        return ids.tolist()

    def conflicts(self) -> pd.DataFrame:
        """The objects on which inspectors disagree (:meth:`InspectionStore.conflicts`)."""
        cat = self.data.catalogue
        return self.inspections.conflicts(pd.Series(cat["z_peak"].to_numpy(float),
                                                    index=cat["object_id"].astype(str)))

    def step(self, offset: int) -> str:
        """Move ``offset`` places along the queue (wrapping); returns the new current ID."""
        queue = self.queue()
        if not queue:
            return self.current
        position = queue.index(self.current) if self.current in queue else -1 if offset > 0 else 0
        self.current = queue[(position + offset) % len(queue)]
        return self.current

    def next_uninspected(self) -> str:
        """The next object of the queue without a quality flag (the current one if none is left)."""
        queue = self.queue()
        done = self.inspections.inspected()
        start = queue.index(self.current) + 1 if self.current in queue else 0
        for object_id in queue[start:] + queue[:start]:
            if object_id not in done:
                self.current = object_id
                break
        return self.current

    def select(self, object_ids: list[str]) -> None:
        """Set the selection (IDs); a single object also becomes the current one."""
        self.selection = [str(i) for i in object_ids]
        if len(self.selection) == 1:
            self.current = self.selection[0]

    def where(self, text: str) -> list[str]:
        """IDs of the objects whose columns (and ``vi_quality``) meet :func:`parse_conditions`'s
        conditions; a missing value meets none."""
        cat = self.data.catalogue
        columns = {name: cat[name] for name in cat.columns}
        columns["vi_quality"] = pd.Series(self.inspections.qualities(cat["object_id"]), index=cat.index)
        keep = np.ones(len(cat), bool)
        for name, op, value in parse_conditions(text, columns):
            column = columns[name]
            if isinstance(value, str):
                present = column.notna().to_numpy()
                keep &= present & _COMPARISONS[op](column.astype(str).to_numpy(), value)
            else:
                keep &= _COMPARISONS[op](column.to_numpy(float), value)
        return cat["object_id"].astype(str)[keep].tolist()

    # --- the current object ----------------------------------------------------------------
    def current_row(self) -> pd.Series:
        return self.data.catalogue.iloc[self.data.row_of(self.current)]

    def solutions(self) -> list[tuple[float, float, float]]:
        """The current object's PDF peaks (z, relative height, probability within 0.01)."""
        return pdf_peaks(self.data.pdf(self.current))

    def cycle_solution(self) -> float | None:
        """Show line markers at the next PDF solution (after the last, back to the first)."""
        zs = [z for z, _, _ in self.solutions()]
        if not zs:
            return None
        if self.display_z is None or not any(abs(self.display_z - z) < 1e-9 for z in zs):
            index = 1 % len(zs)
        else:
            index = (next(i for i, z in enumerate(zs) if abs(self.display_z - z) < 1e-9) + 1) % len(zs)
        self.display_z = zs[index]
        return self.display_z

    @param.depends("current", watch=True)
    def _reset_display_z(self) -> None:
        self.display_z = None

    # --- inspection ------------------------------------------------------------------------
    def flag(self, **changes) -> None:
        """Set inspection fields of the current object (saved at once, with the inspector's name).

        Raises
        ------
        ValueError
            No inspector name yet: every record must say who made it.
        """
        if not self.inspector.strip():
            raise ValueError("type your name in the 'inspector' box first: every flag records who set it")
        self.inspections.set(self.current, inspector=self.inspector.strip(), **changes)
        self.inspection_version += 1

    def toggle_issue(self, mark: str) -> None:
        issues = self.inspections.get(self.current).issues
        self.flag(issues=issues.replace(mark, "") if mark in issues else issues + mark)

    def screened_catalogue(self) -> pd.DataFrame:
        """The catalogue with the screening decision (``screen_kept``) and thresholds as columns."""
        cat = self.data.catalogue.copy()
        cat["screen_kept"] = self.kept()
        cat["screen_entropy_max"] = self.entropy_max if self.use_entropy else np.nan
        cat["screen_skewness_min"] = self.skewness_min if self.use_skewness else np.nan
        return cat
