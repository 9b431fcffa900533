"""The registry: one entry per method, name -> class (or "module:Class", imported on first use).

Adding a method is one class deriving from :class:`~.method.ConformalMethod` and one line in
:data:`METHODS` (or, from outside the package, one call to :func:`register`). Everything else
(bundles, evaluation, the CLI, the widget) reads the method's declarations.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence

from .errors import ConformalInputError
from .method import ConformalMethod
from .options import MethodOptions

__all__ = [
    "METHODS",
    "NAMES",
    "MethodOptions",
    "make_method",
    "method_class",
    "methods_where",
    "register",
]

#: Method name -> class, or "module:Class" relative to this package (imported on first use).
METHODS: dict[str, str | type[ConformalMethod]] = {
    "crc": ".crc:CRC",
    "at": ".adaptive:AT",
    "coat": ".adaptive:COAT",
    "consign": ".consign:CONSIGN",
    "pixelwise": ".pixelwise:PixelwiseAPS",
}


def register(name: str, cls_or_path: str | type[ConformalMethod]) -> None:
    """Add (or replace) the method ``name``: a :class:`ConformalMethod` subclass or an import
    path ``"package.module:Class"`` (absolute, or relative to this package with a leading dot).
    """
    if isinstance(cls_or_path, type):
        if not issubclass(cls_or_path, ConformalMethod):
            raise ConformalInputError(f"{cls_or_path.__name__} is not a ConformalMethod")
        if cls_or_path.name != name:
            raise ConformalInputError(
                f"{cls_or_path.__name__}.name is {cls_or_path.name!r}, registered as {name!r}"
            )
    elif ":" not in str(cls_or_path):
        raise ConformalInputError(f"{cls_or_path!r} is not a 'module:Class' path")
    METHODS[name] = cls_or_path


def method_class(name: str) -> type[ConformalMethod]:
    """The class implementing the method called ``name`` (imported on first use)."""
    if name not in METHODS:
        raise ConformalInputError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    entry = METHODS[name]
    if isinstance(entry, type):
        return entry
    module, _, cls = entry.partition(":")
    package = __package__ if module.startswith(".") else None
    return getattr(importlib.import_module(module, package), cls)


def make_method(name: str, options: MethodOptions | None = None) -> ConformalMethod:
    """Instantiate the method called ``name``."""
    return method_class(name)(options or MethodOptions())


class _LiveNames(Sequence):
    """The registered names, in registry order, read afresh on every use."""

    def __init__(self, keep: Callable[[type[ConformalMethod]], bool] | None = None) -> None:
        self._keep = keep

    def _names(self) -> list[str]:
        return [n for n in METHODS if self._keep is None or self._keep(method_class(n))]

    def __getitem__(self, i):  # type: ignore[override]
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __repr__(self) -> str:
        return repr(tuple(self._names()))


#: Every registered method name, in order (a live view: methods registered later appear).
NAMES: Sequence[str] = _LiveNames()


def methods_where(flag: Callable[[type[ConformalMethod]], bool]) -> Sequence[str]:
    """A live view of the registered names whose class satisfies ``flag``."""
    return _LiveNames(flag)
