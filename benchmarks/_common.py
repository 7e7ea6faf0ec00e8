"""Shared bits of the benchmark scripts: machine description, tables, peak memory."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, Python {platform.python_version()}"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(rows: list[dict], columns: list[str] | None = None, floatfmt: str = "{:.3f}") -> str:
    columns = columns or list(rows[0])
    cells = [
        [floatfmt.format(r[c]) if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns] for r in rows
    ]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def emit_json(figures: dict) -> None:
    """The benchmark's headline figures, as the very last line of its output."""
    print(json.dumps(figures, sort_keys=True))


def line_charts(panels: dict[str, dict[str, list[tuple[float, float]]]], path: Path, *, xlabel: str, ylabel: str,
                hline: float | None = None) -> None:  # fmt: skip
    """One PNG of line charts side by side, drawn with Pillow (no plotting library needed):
    ``{panel title: {series name: [(x, y), ...]}}``, y from 0 to 1."""
    from PIL import Image, ImageDraw

    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    w, h, left, bottom, top, right = 420, 320, 48, 40, 28, 12
    img = Image.new("RGB", (w * len(panels), h), "white")
    draw = ImageDraw.Draw(img)
    for k, (title, series) in enumerate(panels.items()):
        x0 = k * w
        xs = [x for pts in series.values() for x, _ in pts]
        lo, hi = min(xs), max(max(xs), min(xs) + 1)

        def at(x: float, y: float, x0: int = x0, lo: float = lo, hi: float = hi) -> tuple[float, float]:
            return (x0 + left + (x - lo) / (hi - lo) * (w - left - right), top + (1 - y) * (h - top - bottom))

        draw.rectangle([at(lo, 1), at(hi, 0)], outline="black")
        for y in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
            px, py = at(lo, y)
            draw.text((px - 28, py - 6), f"{y:.1f}", fill="black")
        for x in sorted(set(xs)):
            px, py = at(x, 0)
            draw.text((px - 4, py + 4), f"{x:g}", fill="black")
        if hline is not None:
            draw.line([at(lo, hline), at(hi, hline)], fill=(160, 160, 160))
        for j, (name, pts) in enumerate(series.items()):
            colour = colours[j % len(colours)]
            draw.line([at(x, y) for x, y in pts], fill=colour, width=2)
            for x, y in pts:
                px, py = at(x, y)
                draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
            draw.text((x0 + left + 8, top + 6 + 13 * j), name, fill=colour)
        draw.text((x0 + left, 8), title, fill="black")
        draw.text((x0 + w // 2 - 30, h - 16), xlabel, fill="black")
        draw.text((x0 + 4, 8), ylabel if k == 0 else "", fill="black")
    img.save(path)
