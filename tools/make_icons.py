"""Draws the web page's icons (src/gestor/web/static/icons/): a sun over the balance bar, on the
page's header blue. Run once when the drawing changes (Pillow, which matplotlib brings):
    python tools/make_icons.py"""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "src" / "gestor" / "web" / "static" / "icons"
BLUE, SUN, WHITE, GREEN = (16, 35, 63), (240, 165, 0), (255, 255, 255), (26, 127, 55)


def draw(n: int, maskable: bool = False) -> Image.Image:
    big = 4 * n  # drawn large, scaled down: smooth edges
    im = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    if maskable:
        d.rectangle([0, 0, big, big], fill=BLUE)
        k = 0.72  # the content inside the safe zone (a circle of 80 %)
    else:
        d.rounded_rectangle([0, 0, big - 1, big - 1], radius=big * 0.2, fill=BLUE)
        k = 0.92
    c = big / 2
    off = lambda v: c + (v - 0.5) * big * k  # noqa: E731
    sx, sy, r = off(0.5), off(0.40), big * k * 0.16
    for i in range(8):
        a = i * math.pi / 4
        d.line([sx + math.cos(a) * r * 1.35, sy + math.sin(a) * r * 1.35,
                sx + math.cos(a) * r * 1.9, sy + math.sin(a) * r * 1.9], fill=SUN, width=max(1, int(big * k * 0.045)))
    d.ellipse([sx - r, sy - r, sx + r, sy + r], fill=SUN)
    y0, y1 = off(0.72), off(0.84)
    d.rounded_rectangle([off(0.14), y0, off(0.86), y1], radius=(y1 - y0) / 2, fill=WHITE)
    d.rounded_rectangle([off(0.5), y0 + (y1 - y0) * 0.2, off(0.72), y1 - (y1 - y0) * 0.2], radius=(y1 - y0) * 0.3,
                        fill=GREEN)
    d.rectangle([off(0.49), y0 - (y1 - y0) * 0.25, off(0.51), y1 + (y1 - y0) * 0.25], fill=BLUE)
    return im.resize((n, n), Image.LANCZOS)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for n in (32, 180, 192, 512):
        draw(n).save(OUT / f"icon-{n}.png", optimize=True)
    draw(512, maskable=True).save(OUT / "maskable-512.png", optimize=True)
    print("icons in", OUT)
