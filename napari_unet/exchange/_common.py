"""What export and import share: the error they raise, the extra they need, the key of our
card in a package, and how a name becomes one of the spec's identifiers."""

from __future__ import annotations

import re

#: how to get what this package needs
EXTRA = "pip install 'napari-unet[bioimageio]'"
#: the key of our card in a package's ``config``
CONFIG_KEY = "napari_unet"


class ExchangeError(ValueError):
    """A package cannot be written or read; the message says why in one sentence."""


def _need_bioimageio() -> None:
    try:
        import bioimageio.core
        import bioimageio.spec  # noqa: F401
    except ImportError as exc:
        raise ExchangeError(
            f"bioimage.io packages need bioimageio.core and bioimageio.spec, which are not installed: {EXTRA}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _identifier(name: str) -> str:
    """A class or channel name as the spec's identifiers allow (letters, digits, ``_``)."""
    text = re.sub(r"\W+", "_", str(name)).strip("_") or "channel"
    return text if not text[0].isdigit() else f"c{text}"
