"""``scripts/demo.sh`` (the README's demo command) can be run again: every command that writes
under ``out/`` replaces its own earlier output instead of refusing it."""

import re
import shlex
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo.sh"


def _commands() -> list[list[str]]:
    text = re.sub(r"\\\n\s*", " ", SCRIPT.read_text())  # join continued lines
    lines = [ln.strip() for ln in text.splitlines()]
    return [shlex.split(ln) for ln in lines if ln.startswith("napari-consign ")]


def test_every_writing_step_may_replace_its_earlier_output():
    writers = [c for c in _commands() if c[1] in ("predict", "evaluate", "calibrate", "sample")]
    assert {c[1] for c in writers} >= {"predict", "evaluate"}
    for command in writers:
        assert "--overwrite" in command, " ".join(command)
