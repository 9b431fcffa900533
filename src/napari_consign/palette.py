"""The colours of the bands: one (inner, ring) pair per method and the disagreement colours.

From the Okabe-Ito and Paul Tol palettes, distinguishable with the common colour-vision
deficiencies; no disagreement colour is also a band colour. RGBA in 0..1. Pure data (no Qt),
shared by the widget's layers and the demo's captions.
"""

from __future__ import annotations


def _rgb(r: int, g: int, b: int) -> tuple[float, float, float, float]:
    return (r / 255, g / 255, b / 255, 1.0)


# Okabe-Ito colours
BLUE = _rgb(0, 114, 178)  # CRC inner band
ORANGE = _rgb(230, 159, 0)  # CRC ring
BLUISH_GREEN = _rgb(0, 158, 115)
REDDISH_PURPLE = _rgb(204, 121, 167)
SKY_BLUE = _rgb(86, 180, 233)
VERMILLION = _rgb(213, 94, 0)
# Paul Tol's colours
INDIGO = _rgb(51, 34, 136)
SAND = _rgb(221, 204, 119)
WINE = _rgb(136, 34, 85)
TEAL = _rgb(68, 170, 153)
CYAN = _rgb(102, 204, 238)  # disagreement: A only
ROSE = _rgb(238, 102, 119)  # disagreement: B only
PEAR = _rgb(187, 204, 51)  # disagreement: both

#: (inner band, ring) colour of each method; unknown methods get CRC's
METHOD_COLOURS: dict[str, tuple[tuple, tuple]] = {
    "crc": (BLUE, ORANGE),
    "coat": (BLUISH_GREEN, REDDISH_PURPLE),
    "at": (SKY_BLUE, VERMILLION),
    "consign": (INDIGO, SAND),
    "pixelwise": (WINE, TEAL),
}
DISAGREEMENT_COLOURS = {"A only": CYAN, "B only": ROSE, "both": PEAR}
#: the colour pairs in words, for captions
METHOD_COLOUR_NAMES = {
    "crc": "blue inner, orange ring",
    "coat": "green inner, pink ring",
    "at": "sky-blue inner, vermillion ring",
    "consign": "indigo inner, sand ring",
    "pixelwise": "wine inner, teal ring",
}


def method_colours(method: str) -> tuple[tuple, tuple]:
    """``(inner, ring)`` RGBA colours of ``method`` (unknown methods get CRC's)."""
    return METHOD_COLOURS.get(method, METHOD_COLOURS["crc"])
