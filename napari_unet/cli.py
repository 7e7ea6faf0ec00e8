"""The ``napari-unet`` command: the same core as the plugin, over files and folders.

Every sub-command reports a bad input as one line, ``napari-unet: error: ...``, and exits
with status 1; no traceback reaches the user unless ``NAPARI_UNET_DEBUG=1`` is set.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from napari_unet import __version__

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Command]] = {}


def command(name: str, add_arguments: Callable[[argparse.ArgumentParser], None]) -> Callable[[Command], Command]:
    """Register a sub-command: ``add_arguments`` fills its parser, the function runs it."""

    def register(fn: Command) -> Command:
        _COMMANDS[name] = (add_arguments, fn)
        return fn

    return register


def error(message: str) -> None:
    print(f"napari-unet: error: {message}", file=sys.stderr)


def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files to describe")


@command("info", _info_args)
def info(args: argparse.Namespace) -> int:
    """Describe images as napari-unet reads them: shape, axes, type, pixel size."""
    from napari_unet.io import read_image

    failed = 0
    for path in args.inputs:
        try:
            img = read_image(path)
        except (ValueError, OSError) as exc:
            error(str(exc))
            failed += 1
            continue
        scale = ", ".join(f"{a}={s:g} {u}" for a, s, u in zip(img.spatial_axes, img.scale, img.units))
        kind = "labels" if img.is_labels else "image"
        lazy = " (lazy)" if img.lazy else ""
        print(f"{path}: {kind} {img.axes} {img.shape} {img.data.dtype}{lazy}; {scale}")
    return 1 if failed else 0


def _view_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files to open")
    p.add_argument("--sample", choices=["rpe1", "u2os", "misc"], help="open a shipped sample image with its labels")


@command("view", _view_args)
def view(args: argparse.Namespace) -> int:
    """Open napari with the plugin, the given files and/or a sample image."""
    import napari

    viewer = napari.Viewer(title="napari-unet")
    if args.sample:
        viewer.open_sample("napari-unet", args.sample)
    for path in args.inputs:
        viewer.open(path, plugin="napari-unet")
    napari.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-unet", description="U-Net segmentation for microscopy images.")
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_arguments, fn) in _COMMANDS.items():
        p = sub.add_parser(name, help=(fn.__doc__ or "").strip().splitlines()[0], description=fn.__doc__)
        add_arguments(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
