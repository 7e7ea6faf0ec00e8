"""Axis orders and unit names shared by reading and writing (no heavy imports)."""

from __future__ import annotations

_CANONICAL = "CTZYXS"
_IMAGEJ_ORDER = "TZCYXS"
_UNIT_NAMES = {
    "micron": "micrometer",
    "microns": "micrometer",
    "um": "micrometer",
    "µm": "micrometer",
    "\u03bcm": "micrometer",
    "\\u00B5m": "micrometer",
    "nm": "nanometer",
    "mm": "millimeter",
    "cm": "centimeter",
    "m": "meter",
    "s": "second",
    "sec": "second",
    "ms": "millisecond",
    "min": "minute",
    "pixel": "pixel",
    "px": "pixel",
}
_SHORT_UNITS = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm"}


def short_unit(name: str | None) -> str:
    """A unit as tables and TIFF headers write it: ``um``, ``nm``, ``mm``...; ``px`` for
    pixels or none (any spelling the readers meet: ``micron``, ``µm``, ``micrometer``).

    >>> short_unit("micron"), short_unit("nanometer"), short_unit(None)
    ('um', 'nm', 'px')
    """
    canonical = _unit(name)
    return "px" if canonical == "pixel" else _SHORT_UNITS.get(canonical, canonical)


def _unit(name: str | None, default: str = "pixel") -> str:
    if not name:
        return default
    name = str(name).strip()
    return _UNIT_NAMES.get(name, _UNIT_NAMES.get(name.lower(), name))
