"""Split DICOM series into stacks, as a DICOM viewer does.

A series may hold several stacks: projections or localiser planes (one orientation each),
echoes or phases at the same positions, slabs far apart. ``split_series`` groups a series'
files by slice size, pixel spacing and orientation, separates images at the same position by the
header tag that tells them apart (echo, temporal position, trigger time, acquisition number,
image type), and cuts a stack where a gap is more than ``SPLIT_GAP_FACTOR`` times the median gap.
Each resulting ``SeriesInfo`` is one stack with its ``layout``:

* ``"single"``: one 2D image (or one multi-frame file);
* ``"regular"``: slice positions on a regular grid (within 1% of the spacing, or 0.01 mm);
* ``"uneven"``: within 10% of the spacing (rounded positions): loaded on the regular grid, warned;
* ``"resample"``: missing slices or non-uniform gaps: resampled along the slice normal onto a
  regular grid of ``spacing`` mm (``read_series`` does it and warns).

A stack that cannot form a volume carries a ``problem`` (and ``hint``); ``check_stack`` raises it:
duplicate positions no tag separates, gantry tilt (slices sheared against their normal), gaps
too irregular to resample, a zero Pixel Spacing, or a header announcing more pixel bytes than an
uncompressed file holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DicomSeriesError
from .headers import SUBSERIES_TAGS, SliceInfo, _int
from .sniff import NATIVE_TRANSFER_SYNTAXES

ORIENTATION_TOL = 1e-3  # direction cosines this close are one orientation
SPLIT_GAP_FACTOR = 4.0  # a gap this many times the median gap starts a new stack
REGULAR_TOL, UNEVEN_TOL = 0.01, 0.10  # position deviation, as a fraction of the slice spacing
SHEAR_TOL = 0.1  # in-plane offset between slices, as a fraction of the pixel size
MAX_RESAMPLE_FACTOR = 4  # a resampled stack has at most this many times the acquired slices


@dataclass(frozen=True)
class SeriesInfo:
    """One stack of a DICOM series: its files sorted along the slice normal.

    ``stack`` is its 1-based number within the series (0 when the series is one stack), ``key``
    identifies it (the Series Instance UID, with ``:<stack>`` appended when the series has several
    stacks). ``problem``/``hint``: why it cannot open as one volume ('' when it can).
    """

    uid: str
    slices: tuple[SliceInfo, ...]
    duplicates: tuple[str, ...] = ()  # files skipped as copies of an already listed SOP instance
    stack: int = 0
    n_stacks: int = 1
    layout: str = "single"
    spacing: float = 0.0  # slice spacing of the regular grid (mm), 0 for single images
    problem: str = ""
    hint: str = ""

    @property
    def key(self) -> str:
        return f"{self.uid}:{self.stack}" if self.stack else self.uid

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(s.path for s in self.slices)

    @property
    def n_slices(self) -> int:
        """Number of 2D slices: files, or frames for a multi-frame file."""
        return sum(s.frames for s in self.slices)

    @property
    def modality(self) -> str:
        return self.slices[0].modality

    @property
    def description(self) -> str:
        return " ".join(self.slices[0].description.split())

    @property
    def series_number(self) -> str:
        return self.slices[0].series_number

    @property
    def orientation(self) -> str:
        """'axial', 'coronal', 'sagittal', 'oblique axial (12 deg)' or '' (no orientation)."""
        return orientation_label(self.slices[0].normal)

    @property
    def acquisition_time(self) -> str:
        """Earliest acquisition time of the stack as HH:MM:SS, '' if none."""
        times = sorted(t for t in (s.acquisition_time for s in self.slices) if t[:6].isdigit())
        return f"{times[0][:2]}:{times[0][2:4]}:{times[0][4:6]}" if times else ""

    def summary(self) -> str:
        """One line: ``MR #700 'ANGIO' stack 2 of 7: 1 file, 16 x 16, sagittal, UID 1.2...``."""
        parts = [self.modality or "DICOM"]
        if self.series_number:
            parts.append(f"#{self.series_number}")
        if self.description:
            parts.append(f"'{self.description}'")
        if self.stack:
            parts.append(f"stack {self.stack} of {self.n_stacks}")
        x, y = self.slices[0].size[:2]
        n = len(self.slices)
        count = f"{n} file{'s' if n != 1 else ''}"
        if self.n_slices != n:
            count += f" ({self.n_slices} frames)"
        where = f", {self.orientation}" if self.orientation else ""
        return f"{' '.join(parts)}: {count}, {x} x {y}{where}, UID {self.uid}"


def orientation_label(normal: np.ndarray | None) -> str:
    """Name of the patient plane closest to the slices with this normal (LPS axes)."""
    if normal is None:
        return ""
    n = np.abs(np.asarray(normal, float))
    axis = int(np.argmax(n))
    name = ("sagittal", "coronal", "axial")[axis]
    tilt = float(np.degrees(np.arccos(np.clip(n[axis] / max(np.linalg.norm(n), 1e-12), 0, 1))))
    return name if tilt < 0.5 else f"oblique {name} ({tilt:.0f} deg)"


def check_stack(series: SeriesInfo) -> None:
    """Raise ``DicomSeriesError`` if the stack cannot form one volume (its ``problem``)."""
    if series.problem:
        raise DicomSeriesError(
            f"Cannot open {series.summary()} as one volume: {series.problem}.",
            series.hint or "Pick another stack or series (Open DICOM series lists them).",
        )


# ----------------------------------------------------------------------------------------------
# splitting
# ----------------------------------------------------------------------------------------------
def _dedupe(slices: Iterable[SliceInfo]) -> tuple[list[SliceInfo], list[str]]:
    """Keep the first file of each SOP Instance UID (others are copies, e.g. the same image in
    another transfer syntax)."""
    kept: dict[str, SliceInfo] = {}
    dups = []
    for s in slices:
        key = s.sop_uid or s.path
        if key in kept:
            dups.append(s.path)
        else:
            kept[key] = s
    return list(kept.values()), dups


def _geometry_groups(slices: Sequence[SliceInfo]) -> list[list[SliceInfo]]:
    """Files of one size, components, pixel spacing and orientation; files without position or
    orientation, and multi-frame files, each on their own (one 2D image or one frame stack)."""
    groups: list[list[SliceInfo]] = []
    for s in slices:
        if s.frames > 1 or s.position is None or s.orientation is None:
            groups.append([s])
            continue
        for g in groups:
            f = g[0]
            if (
                f.frames == 1
                and f.position is not None
                and f.orientation is not None
                and f.size[:2] == s.size[:2]
                and f.components == s.components
                and f.pixel_spacing == s.pixel_spacing
                and np.max(np.abs(np.subtract(f.orientation, s.orientation))) <= ORIENTATION_TOL
            ):
                g.append(s)
                break
        else:
            groups.append([s])
    return groups


def _depths(slices: Sequence[SliceInfo]) -> np.ndarray:
    normal = slices[0].normal
    return np.array([float(np.dot(s.position, normal)) for s in slices])


def _split_same_positions(group: list[SliceInfo]) -> tuple[list[list[SliceInfo]], str]:
    """Separate images at the same positions by the first header tag that makes every part's
    positions distinct; else the group and the problem."""
    rounded = np.round(_depths(group), 2)
    if len(set(rounded)) == len(group):
        return [group], ""
    for tag in SUBSERIES_TAGS:
        values = [s.subseries.get(tag, "") for s in group]
        if len(set(values)) < 2:
            continue
        parts = [
            [s for s, v in zip(group, values, strict=True) if v == value]
            for value in dict.fromkeys(values)
        ]
        if all(len(set(np.round(_depths(p), 2))) == len(p) for p in parts):
            return parts, ""
    return [group], (
        f"{len(group)} files at only {len(set(rounded))} distinct slice positions (several "
        "echoes, phases or time points that no header tag tells apart)"
    )


def _runs(group: list[SliceInfo]) -> list[list[SliceInfo]]:
    """Sort along the normal and cut where a gap exceeds SPLIT_GAP_FACTOR x the median gap."""
    order = sorted(group, key=lambda s: (float(np.dot(s.position, s.normal)), s.instance or 0))
    gaps = np.diff(_depths(order))
    if len(gaps) < 2:
        return [order]
    cut = SPLIT_GAP_FACTOR * float(np.median(gaps))
    runs, start = [], 0
    for k, gap in enumerate(gaps):
        if gap > cut:
            runs.append(order[start : k + 1])
            start = k + 1
    runs.append(order[start:])
    return runs


def _layout(run: Sequence[SliceInfo]) -> tuple[str, float, str, str]:
    """``(layout, spacing, problem, hint)`` of a run of single-frame slices sorted by depth."""
    if len(run) == 1:
        return "single", 0.0, "", ""
    pos = np.array([s.position for s in run], float)
    normal = run[0].normal / np.linalg.norm(run[0].normal)
    rel = pos - pos[0]
    depth = rel @ normal
    in_plane = np.linalg.norm(rel - np.outer(depth, normal), axis=1)
    pixel = min(run[0].spacing_values or (1.0, 1.0))
    if in_plane.max() > max(0.01, SHEAR_TOL * pixel):
        tilt = np.degrees(np.arctan2(in_plane[-1], abs(depth[-1])))
        return (
            "",
            0.0,
            f"the slices are sheared by {tilt:.3g} degrees against their planes (gantry tilt; "
            f"up to {in_plane.max():.3g} mm in-plane offset), so a regular grid would misplace "
            "them",
            "Resample the series first, e.g. with dcm2niix (it corrects gantry tilt) or 3D "
            "Slicer's acquisition geometry regularization, and open the result.",
        )
    span = depth[-1]
    spacing = span / (len(run) - 1)
    dev = np.abs(depth - spacing * np.arange(len(run))).max()
    if dev <= max(0.01, REGULAR_TOL * spacing):
        return "regular", spacing, "", ""
    if dev <= UNEVEN_TOL * spacing:
        return "uneven", spacing, "", ""
    gaps = np.diff(depth)
    steps = max(1, round(float(span / gaps.min())))
    if steps + 1 > MAX_RESAMPLE_FACTOR * len(run):
        return (
            "",
            0.0,
            f"slice gaps range from {gaps.min():.3g} to {gaps.max():.3g} mm, too irregular to "
            "resample onto one grid",
            "Open another stack, or resample the series with a DICOM converter first.",
        )
    return "resample", span / steps, "", ""


def _header_problem(slices: Sequence[SliceInfo]) -> tuple[str, str]:
    """A zero/negative Pixel Spacing, or a header announcing more uncompressed pixel bytes than
    the file holds (a damaged or forged header), as ``(problem, hint)``."""
    for s in slices:
        vals = s.spacing_values
        if s.pixel_spacing and (vals is None or min(vals) <= 0):
            return (
                f"its Pixel Spacing (0028,0030) is '{s.pixel_spacing}', so the pixel size is "
                "unknown (it would silently become 1 mm)",
                "Fix the header (e.g. with pydicom) or re-export the series from the scanner.",
            )
        if s.transfer_syntax in NATIVE_TRANSFER_SYNTAXES and 0 < s.file_size < s.pixel_bytes:
            x, y = s.size[:2]
            return (
                f"the header of {s.path} announces {x} x {y} x {s.frames} pixels "
                f"({s.pixel_bytes / 1e6:.4g} MB uncompressed) but the file holds only "
                f"{s.file_size / 1e6:.4g} MB",
                "The file is damaged or its header is wrong; export the series again.",
            )
    return "", ""


def split_series(uid: str, slices: Iterable[SliceInfo]) -> list[SeriesInfo]:
    """The stacks of one series (see the module docstring): volumes first, most slices first."""
    kept, dups = _dedupe(slices)
    parts: list[tuple[list[SliceInfo], str, float, str, str]] = []
    for group in _geometry_groups(kept):
        if len(group) == 1:
            parts.append((group, "single", 0.0, "", ""))
            continue
        subgroups, problem = _split_same_positions(group)
        if problem:
            order = sorted(group, key=lambda s: (s.instance or 0, s.path))
            parts.append(
                (
                    order,
                    "",
                    0.0,
                    problem,
                    "Open a folder that holds one echo or time point, or pick another stack.",
                )
            )
            continue
        for sub in subgroups:
            for run in _runs(sub):
                parts.append((run, *_layout(run)))
    stacks = []
    for run, layout, spacing, problem, hint in parts:
        if not problem:
            problem, hint = _header_problem(run)
        stacks.append((run, layout, spacing, problem, hint))
    stacks.sort(key=lambda p: (bool(p[3]), -sum(s.frames for s in p[0]), p[0][0].instance or 0))
    n = len(stacks)
    return [
        SeriesInfo(
            uid,
            tuple(run),
            tuple(dups),
            stack=k + 1 if n > 1 else 0,
            n_stacks=n,
            layout=layout,
            spacing=spacing,
            problem=problem,
            hint=hint,
        )
        for k, (run, layout, spacing, problem, hint) in enumerate(stacks)
    ]


def group_stacks(slices: Iterable[SliceInfo]) -> list[SeriesInfo]:
    """All stacks of all series among ``slices``: volumes first, then most slices first, then
    whole series before parts of split ones."""
    by_uid: dict[str, list[SliceInfo]] = {}
    for s in slices:
        by_uid.setdefault(s.series_uid, []).append(s)
    out = [st for uid, ss in by_uid.items() for st in split_series(uid, ss)]
    return sorted(
        out,
        key=lambda s: (
            bool(s.problem),
            -s.n_slices,
            s.n_stacks,  # on a tie, a series that is one stack before a part of a split one
            _int(s.series_number) or 0,
            s.uid,
            s.stack,
        ),
    )
