"""A PNG of a run's loss and accuracy per round, drawn with numpy alone.

A run's folder should open without extra tools; a plotting library would be a heavy
dependency for two lines on a grid, so the chart is rasterised here and written with
zlib (PNG's own compression).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

WIDTH, HEIGHT, MARGIN = 640, 360, 30
COLOURS = {"train loss": (31, 119, 180), "eval loss": (255, 127, 14), "accuracy": (44, 160, 44)}


def _line(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, rgb: tuple[int, int, int]) -> None:
    steps = max(abs(x1 - x0), abs(y1 - y0), 1)
    xs = np.linspace(x0, x1, steps + 1).round().astype(int)
    ys = np.linspace(y0, y1, steps + 1).round().astype(int)
    for dy in (0, 1):  # two pixels wide
        img[np.clip(ys + dy, 0, HEIGHT - 1), np.clip(xs, 0, WIDTH - 1)] = rgb


def chart(series: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Each series scaled to its own range (loss and accuracy differ by orders), on a
    light grid, one colour each (``COLOURS``)."""
    img = np.full((HEIGHT, WIDTH, 3), 255, dtype=np.uint8)
    x_left, x_right, y_top, y_bottom = MARGIN, WIDTH - MARGIN, MARGIN, HEIGHT - MARGIN
    for i in range(5):
        y = y_top + i * (y_bottom - y_top) // 4
        img[y, x_left:x_right] = (225, 225, 225)
    img[y_top:y_bottom, x_left] = (0, 0, 0)
    img[y_bottom, x_left:x_right] = (0, 0, 0)
    for name, values in series.items():
        v = np.array([x for x in values], dtype=float)
        ok = np.isfinite(v)
        if ok.sum() < 1:
            continue
        lo, hi = float(v[ok].min()), float(v[ok].max())
        span = hi - lo or 1.0
        n = len(v)
        pts = [
            (
                x_left + (x_right - x_left) * i // max(1, n - 1),
                int(y_bottom - (y_bottom - y_top) * (v[i] - lo) / span),
            )
            for i in range(n)
            if ok[i]
        ]
        rgb = COLOURS.get(name, (0, 0, 0))
        for (a, b), (c, d) in zip(pts, pts[1:], strict=False):
            _line(img, a, b, c, d, rgb)
        for a, b in pts:
            img[max(0, b - 2) : b + 3, max(0, a - 2) : a + 3] = rgb
    return img


def png(img: np.ndarray) -> bytes:
    """An RGB image as PNG bytes."""
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
