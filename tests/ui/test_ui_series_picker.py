"""The "Open DICOM series" dock widget in a real viewer: list a folder's series, open one by UID
(through the reader's layer building, in radiological display), refuse bad folders clearly.

The folders are the two-series DICOM folders the io tests build (``tests/io/io_helpers.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from io_helpers import assert_layer_matches_sitk, pydicom_data, write_dicom_series  # noqa: E402

from napari_consign.io import geometry_from_metadata  # noqa: E402


@pytest.fixture
def study(tmp_path):
    """A folder with two CT series: A (4 slices, 'big') and B (2 slices, 'small')."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "study"
    a = write_dicom_series(
        folder, rng.integers(0, 900, (4, 5, 6)).astype(np.int16), prefix="A", description="big"
    )
    b = write_dicom_series(
        folder,
        rng.integers(0, 900, (2, 5, 6)).astype(np.int16),
        prefix="B",
        description="small",
        series_number=2,
        modality="MR",
    )

    def uid(paths):
        r = sitk.ImageFileReader()
        r.SetFileName(str(paths[0]))
        r.ReadImageInformation()
        return r.GetMetaData("0020|000e").strip().rstrip("\x00")

    return folder, {"A": (uid(a), a), "B": (uid(b), b)}


@pytest.fixture
def picker(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-consign", "Open DICOM series")
    return viewer, widget


def _table(widget) -> list[list[str]]:
    t = widget.table
    return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]


def test_lists_the_series_and_opens_the_chosen_one(picker, study, notes):
    from napari_consign.ui.series_picker import COLUMNS

    viewer, widget = picker
    folder, series = study
    uid_a, _ = series["A"]
    uid_b, files_b = series["B"]

    listed = widget.set_folder(folder)
    assert [s.uid for s in listed] == [uid_a, uid_b]  # most slices first
    rows = _table(widget)
    assert rows[0][: COLUMNS.index("Folder")] == [
        "#1",
        "big",
        "CT",
        "axial",
        "6 x 5",
        "4",
        "?",
    ]
    assert rows[1][:6] == ["#2", "small", "MR", "axial", "6 x 5", "2"]
    assert widget.selected_uid() == uid_a and widget.open_button.isEnabled()

    widget.select_series(uid_b)
    assert widget.selected_uid() == uid_b
    [layer] = widget.open_selected()
    # npe2 hands the widget a public-only proxy of the viewer, so compare by name
    assert [ly.name for ly in viewer.layers] == [layer.name] == ["small"]
    assert layer.data.shape == (2, 5, 6)
    geometry = geometry_from_metadata(layer.metadata)
    assert geometry.series_uid == uid_b
    reference = sitk.ReadImage([str(p) for p in files_b])  # files written in slice order
    np.testing.assert_array_equal(layer.data, sitk.GetArrayFromImage(reference))
    assert_layer_matches_sitk(layer, sitk.DICOMOrient(reference, "LPS"))
    assert any("holds 2 DICOM series" in m for m in notes["info"]), notes
    assert not notes["error"]

    # radiological display follows the dims from now on
    viewer.dims.order = (1, 0, 2)  # coronal
    assert tuple(map(str, viewer.scene.camera.orientation2d)) == ("up", "right")
    viewer.dims.order = (0, 1, 2)  # axial
    assert tuple(map(str, viewer.scene.camera.orientation2d)) == ("down", "right")


def test_bad_folders_notify_and_add_nothing(picker, tmp_path, notes):
    viewer, widget = picker
    (tmp_path / "empty").mkdir()
    text = tmp_path / "text"
    text.mkdir()
    (text / "a.txt").write_text("hello")
    (text / "b.dcm").write_bytes(b"\0" * 300)
    a_file = tmp_path / "file.dcm"
    a_file.write_bytes(b"\0" * 300)
    cases = [
        (tmp_path / "missing", "No such folder"),
        (a_file, "is a file, not a folder"),
        (tmp_path / "empty", "No DICOM image series in"),
        (text, "No DICOM image series in"),
        ("", "Choose a DICOM folder first"),
    ]
    for folder, message in cases:
        notes["error"].clear()
        assert widget.set_folder(folder) == []
        assert widget.table.rowCount() == 0 and not widget.open_button.isEnabled()
        assert any(message in m for m in notes["error"]), (folder, notes["error"])
        assert message in widget.status.text()
    assert widget.open_selected() == []
    assert len(viewer.layers) == 0


def test_non_image_folder_says_why(picker, tmp_path, notes):
    import shutil

    from pydicom.data import get_testdata_file

    _viewer, widget = picker
    shutil.copy(get_testdata_file("test-SR.dcm", download=False), tmp_path / "sr.dcm")
    assert widget.set_folder(tmp_path) == []  # the SR file has no pixel data: nothing listed
    assert any("No DICOM image series" in m for m in notes["error"])


@pytest.mark.slow
def test_tri_planar_pilots_are_listed_plane_by_plane(picker, notes):
    from napari_consign.ui.series_picker import COLUMNS

    _viewer, widget = picker
    folder = pydicom_data() / "dicomdirtests" / "98892003" / "MR2"  # 2 tri-planar pilots
    listed = widget.set_folder(folder)
    assert len(listed) == 7 and not any(s.problem for s in listed)
    rows = _table(widget)
    orientation, series = COLUMNS.index("Orientation"), COLUMNS.index("Series")
    assert rows[0][COLUMNS.index("Description")] == "FAST LOCALIZER"  # a whole series first
    assert (
        sorted(r[orientation] for r in rows[1:])
        == ["axial"] * 2 + ["coronal"] * 2 + ["sagittal"] * 2
    )
    assert sorted(r[series] for r in rows[1:]) == [f"#2 ({k}/3)" for k in (1, 1, 2, 2, 3, 3)]
    axial = listed[[r[orientation] for r in rows].index("axial")]
    widget.select_series(axial.key)
    [layer] = widget.open_selected()
    assert layer.data.shape == (1, 16, 16)  # an axial plane of the pilot
    assert not notes["error"]


def test_refused_stack_is_marked_and_says_why(picker, tmp_path, notes):
    from napari_consign.ui.series_picker import COLUMNS

    viewer, widget = picker
    uid = "1.2.826.0.1.3680043.8.498.91"
    rng = np.random.default_rng(1)
    write_dicom_series(
        tmp_path, rng.integers(0, 9, (3, 5, 6)).astype(np.int16), uid=uid, prefix="A"
    )
    write_dicom_series(
        tmp_path, rng.integers(0, 9, (3, 5, 6)).astype(np.int16), uid=uid, prefix="B"
    )
    [stack] = widget.set_folder(tmp_path)
    [row] = _table(widget)
    assert row[COLUMNS.index("Note")] == "6 files at only 3 distinct slice positions"
    widget.select_series(stack.key)
    assert widget.open_selected() == []
    assert any("6 files at only 3 distinct" in m for m in notes["error"]), notes
    assert len(viewer.layers) == 0


@pytest.mark.slow
def test_every_column_shows_at_default_size(make_napari_viewer, qtbot):
    """Long descriptions and subfolder names: no column is cut, none scrolls out of view when the
    widget is shown at its default size."""
    from napari_consign.ui.series_picker import SeriesPickerWidget

    widget = SeriesPickerWidget(make_napari_viewer())
    qtbot.addWidget(widget)
    widget.set_folder(pydicom_data() / "dicomdirtests")  # nested folders, read via its DICOMDIR
    table = widget.table
    assert table.rowCount() == 25
    metrics = table.fontMetrics()
    for c in range(table.columnCount()):
        texts = [table.item(r, c).text() for r in range(table.rowCount())]
        texts.append(table.horizontalHeaderItem(c).text())
        needed = max(metrics.horizontalAdvance(t) for t in texts)
        assert table.columnWidth(c) >= needed, (c, texts)
    widget.show()
    widget.resize(widget.sizeHint())
    qtbot.waitExposed(widget)
    total = sum(table.columnWidth(c) for c in range(table.columnCount()))
    assert table.viewport().width() >= total, (table.viewport().width(), total)
    assert table.horizontalScrollBar().maximum() == 0


@pytest.mark.slow
def test_ct_window_presets(picker, tmp_path):
    from napari_consign.io.display import CT_WINDOWS, window_limits

    _viewer, widget = picker
    rng = np.random.default_rng(2)
    write_dicom_series(tmp_path, rng.integers(-1000, 2000, (3, 5, 6)).astype(np.int16))
    widget.set_folder(tmp_path)
    [layer] = widget.open_selected()
    assert tuple(layer.contrast_limits) == (-160.0, 240.0)  # soft tissue: W 400, L 40
    assert [widget.window_box.itemText(i) for i in range(widget.window_box.count())] == list(
        CT_WINDOWS
    )
    for name in ("bone", "brain", "lung"):
        assert widget.apply_window(name)
        assert tuple(layer.contrast_limits) == window_limits(name)
    assert window_limits("lung") == (-1350.0, 150.0)
