"""Make the README's screenshots in a real napari window (run under Xvfb).

xvfb-run -a python scripts/screenshots.py
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def main() -> None:
    import napari

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-unet")
    viewer.window.resize(1200, 800)
    viewer.open_sample("napari-unet", "rpe1")
    viewer.layers[-1].contour = 2
    viewer.layers[-1].opacity = 0.8
    viewer.reset_view()
    viewer.screenshot(str(OUT / "sample.png"), canvas_only=False)
    print(f"wrote {OUT / 'sample.png'}")
    viewer.close()


if __name__ == "__main__":
    main()
