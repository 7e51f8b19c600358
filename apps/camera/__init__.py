"""The live camera demo: ``edgekit demo {upscale,classify}``.

Frames from a webcam, a video file, a Raspberry Pi CSI camera or a virtual camera over the
shipped photographs go through a threaded pipeline (capture → pre-process → inference →
render) that keeps the model busy and never queues stale frames; the view (bicubic against
the model for ``upscale``, the top-5 classes for ``classify``) is shown in a window and/or
recorded to MP4, with inference and end-to-end latency, FPS, and the backend and accelerator
actually used drawn on it.

Modules: :mod:`.sources`, :mod:`.pipeline`, :mod:`.tasks`, :mod:`.overlay`, :mod:`.record`,
:mod:`.window`, :mod:`.models` (which model runs), :mod:`.app` (:func:`run_demo`, what the CLI
calls), :mod:`.make_default_bundle` (regenerates ``default_bundle/``, the shipped bundle).

Example::

    >>> from edgekit.apps.camera import DemoOptions, run_demo
    >>> result = run_demo(DemoOptions(task="upscale", headless=True, frames=60))   # doctest: +SKIP
    >>> result.summary["fps"], result.recording                                      # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DemoOptions", "DemoResult", "DemoInterrupted", "run_demo"]

if TYPE_CHECKING:  # pragma: no cover
    from edgekit.apps.camera.app import DemoInterrupted, DemoOptions, DemoResult, run_demo


def __getattr__(name: str) -> Any:
    if name in __all__:
        from edgekit.apps.camera import app

        return getattr(app, name)
    raise AttributeError(f"module 'edgekit.apps.camera' has no attribute {name!r}")
