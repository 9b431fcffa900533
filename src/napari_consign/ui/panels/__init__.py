"""The dock widget's panels, each a small QWidget with one job over the shared
:class:`~napari_consign.workspace.Workspace`: scan and methods (:mod:`.inputs`), model and
calibration (:mod:`.settings`), run (:mod:`.run`), alpha and guarantee (:mod:`.alpha`), numbers
(:mod:`.numbers`), compare (:mod:`.compare`) and export (:mod:`.export`)."""
