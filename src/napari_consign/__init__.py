"""napari-consign: conformal uncertainty bands for medical image segmentation.

Kept deliberately light: importing the package pulls in neither torch, SimpleITK nor Qt.
"""

__version__ = "0.1.0"
