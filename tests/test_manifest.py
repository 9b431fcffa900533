"""The root napari.yaml is what the installed package ships, and npe2 accepts it."""

import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_manifest_is_the_root_manifest():
    shipped = files("napari_consign") / "napari.yaml"
    assert shipped.is_file(), "napari.yaml is not shipped inside the package"
    data = yaml.safe_load(shipped.read_text())
    assert data["name"] == "napari-consign"
    root = ROOT / "napari.yaml"
    if root.is_file():
        assert yaml.safe_load(root.read_text()) == data


def test_npe2_validates_the_installed_plugin():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-consign"],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_every_command_resolves_to_an_importable_callable():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-consign")
    for command in manifest.contributions.commands or []:
        module, _, attr = command.python_name.partition(":")
        obj = __import__(module, fromlist=[attr])
        assert callable(getattr(obj, attr)), command.id


def test_manifest_widget(make_napari_viewer):
    """The widget contribution is in the manifest and napari docks it through npe2 (a missing
    contribution is a failure, not a skip)."""
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-consign")
    names = [w.display_name for w in (manifest.contributions.widgets or [])]
    assert "Conformal uncertainty" in names, (
        f"napari.yaml has no 'Conformal uncertainty' widget contribution (widgets: {names})"
    )
    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-consign", "Conformal uncertainty")
    assert type(widget).__name__ == "ConsignWidget"
