"""The ``napari-unet`` command: the same core as the plugin, over files and folders.

Every sub-command reports a bad input as one line, ``napari-unet: error: ...``, and exits
with status 1; no traceback reaches the user unless ``NAPARI_UNET_DEBUG=1`` is set.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from napari_unet import __version__

# importing the command modules registers the commands, in this order in --help
from napari_unet.cli import (  # noqa: F401
    count_cmd,
    evaluate_cmd,
    exchange_cmd,
    info_cmd,
    interpolate_cmd,
    predict_cmd,
    suggest_cmd,
    train_cmd,
    view_cmd,
)
from napari_unet.cli._base import _COMMANDS, error, negative_slices_given


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option shows its default, once: not again where its help already says it, and not
    where there is none ("default: None" tells a person nothing)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "default" in (action.help or "") or action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-unet", description="U-Net segmentation for microscopy images.")
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_arguments, fn) in _COMMANDS.items():
        p = sub.add_parser(
            name,
            help=(fn.__doc__ or "").strip().splitlines()[0],
            description=fn.__doc__,
            formatter_class=_HelpFormatter,
        )
        add_arguments(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    negative = negative_slices_given(given)
    if negative is not None:  # argparse would read it as an option and say "expected at least one argument"
        error(f"--annotated: slice numbers start at 0 (the first slice), got {negative!r}")
        return 2
    args = build_parser().parse_args(given)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    except (ValueError, OSError) as exc:
        if os.environ.get("NAPARI_UNET_DEBUG"):
            raise
        error(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
