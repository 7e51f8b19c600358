"""Text panels drawn on the rendered view with ``cv2.putText``: the stats panel (model,
backend and accelerator, inference p50, end-to-end p50 — with the time frames queued for the
model when the source is not paced — FPS, and warnings such as a model without trained
weights, in red), the top-5 list of the classifier, corner labels and the key help line.
Everything but the help line is part of the rendered frame, so recordings and snapshots carry
it too. Hershey fonts draw ASCII only: texts here use ``-``, not dashes.

Panels sit on a darkened (not opaque) background so the picture stays visible, and scale
their font with the image height so they are legible from 240p to 1080p. They draw in place
on the image they are given; each costs well under a millisecond.

Example::

    >>> img = np.zeros((480, 640, 3), np.uint8)
    >>> stats_panel(img, ["quicksrnet_small_x2", "litert / XNNPACK", "infer p50 12.1 ms"])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgekit.apps.camera._cv import cv2

__all__ = ["stats_panel", "top_k_panel", "corner_label", "help_line", "stats_lines", "font_scale"]

_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX
_WHITE = (255, 255, 255)
_ACCENT = (80, 220, 255)  # amber in BGR
_WARN = (70, 70, 255)  # red in BGR


def font_scale(img: np.ndarray) -> float:
    return max(0.35, min(1.0, img.shape[0] / 480 * 0.45))


def _darken(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, keep: float = 0.35) -> None:
    h, w = img.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 > x0 and y1 > y0:
        roi = img[y0:y1, x0:x1]
        roi[:] = cv2().convertScaleAbs(roi, alpha=keep)


def _text_block(img: np.ndarray, lines: Sequence[str], x: int, y: int, scale: float,
                colors: Sequence[tuple[int, int, int]] | None = None, anchor_bottom: bool = False) -> tuple[int, int]:
    """Lines of text on a darkened box whose top-left (or bottom-left) corner is (x, y);
    returns the box's (width, height)."""
    cv = cv2()
    if not lines:
        return 0, 0
    sizes = [cv.getTextSize(t, _FONT, scale, 1) for t in lines]
    line_h = max(s[0][1] + s[1] for s in sizes) + max(2, int(4 * scale))
    pad = max(3, int(6 * scale))
    box_w = max(s[0][0] for s in sizes) + 2 * pad
    box_h = line_h * len(lines) + pad
    if anchor_bottom:
        y = y - box_h
    _darken(img, x, y, x + box_w, y + box_h)
    for i, text in enumerate(lines):
        color = colors[i] if colors else _WHITE
        baseline_y = y + pad + (i + 1) * line_h - sizes[i][1] - 2
        cv.putText(img, text, (x + pad, baseline_y), _FONT, scale, color, 1, cv.LINE_AA)
    return box_w, box_h


def stats_lines(model: str, backend: str, accelerator: str, infer_p50: float | None, e2e_p50: float | None,
                fps: float | None, capture_fps: float | None = None, *, paced: bool = True,
                queue_p50: float | None = None) -> list[str]:
    """The stats panel's text: what ran, where, and how fast. ``capture_fps``: a live camera's
    rate. ``paced=False`` (a file, the headless virtual camera): frames wait for the model
    instead of being dropped, so the end-to-end line says how long they queued."""
    def ms(v: float | None) -> str:
        return "--" if v is None else f"{v:.1f} ms"

    def hz(v: float | None) -> str:
        return "--" if v is None else f"{v:.1f}"

    e2e = f"end-to-end p50 {ms(e2e_p50)}" + ("" if paced else f" (queue {ms(queue_p50)})")
    rate = f"FPS {hz(fps)}" + (f"  (camera {hz(capture_fps)})" if capture_fps is not None
                               else "" if paced else "  (unpaced source)")
    return [model, f"{backend} / {accelerator}", f"inference p50 {ms(infer_p50)}", e2e, rate]


def stats_panel(img: np.ndarray, lines: Sequence[str], extra: Sequence[str] = (), warnings: Sequence[str] = ()) -> None:
    """The stats panel in the top-left corner; the first line (the model) is highlighted,
    ``warnings`` come last, in red."""
    all_lines = [*lines, *extra, *warnings]
    colors = [_ACCENT] + [_WHITE] * (len(lines) + len(extra) - 1) + [_WARN] * len(warnings)
    m = max(2, img.shape[0] // 120)
    _text_block(img, all_lines, m, m, font_scale(img) * 0.9, colors)


def top_k_panel(img: np.ndarray, items: Sequence[tuple[str, float]]) -> None:
    """The classifier's top-k as 'label  37.2%' lines with bars, bottom-left."""
    cv = cv2()
    if not items:
        return
    scale = font_scale(img)
    lines = [f"{p * 100:5.1f}%  {label[:32]}" for label, p in items]
    m = max(2, img.shape[0] // 120)
    bottom = img.shape[0] - m - (int(28 * scale) + 6)  # leave room for corner labels / help
    w, h = _text_block(img, lines, m, bottom, scale, [_ACCENT] + [_WHITE] * (len(lines) - 1), anchor_bottom=True)
    # a thin probability bar under each line
    line_h = (h - max(3, int(6 * scale))) / len(lines)
    for i, (_, p) in enumerate(items):
        y = int(bottom - h + max(3, int(6 * scale)) + (i + 1) * line_h - 2)
        cv.line(img, (m + 4, y), (m + 4 + int((w - 8) * max(0.0, min(1.0, p))), y), _ACCENT, 1)


def corner_label(img: np.ndarray, text: str, corner: str) -> None:
    """A short label in a bottom corner (``bottom-left`` or ``bottom-right``)."""
    cv = cv2()
    scale = font_scale(img) * 0.9
    (tw, th), base = cv.getTextSize(text, _FONT, scale, 1)
    pad = max(3, int(5 * scale))
    m = max(2, img.shape[0] // 120)
    y1 = img.shape[0] - m
    y0 = y1 - th - base - 2 * pad
    x0 = m if corner == "bottom-left" else img.shape[1] - m - tw - 2 * pad
    _darken(img, x0, y0, x0 + tw + 2 * pad, y1)
    cv.putText(img, text, (x0 + pad, y1 - pad - base), _FONT, scale, _WHITE, 1, cv.LINE_AA)


def help_line(img: np.ndarray, text: str = "q quit  space pause  s snapshot  v view") -> None:
    """The key help, top-right (windowed runs only; recordings leave it out)."""
    cv = cv2()
    scale = font_scale(img) * 0.75
    (tw, _), _ = cv.getTextSize(text, _FONT, scale, 1)
    m = max(2, img.shape[0] // 120)
    _text_block(img, [text], img.shape[1] - tw - m - 2 * max(3, int(6 * scale)), m, scale)
