"""edgekit.runtimes: one small API over onnxruntime, LiteRT and CoreML.

``load(path)`` returns a :class:`~edgekit.runtimes.base.Session`; ``bench(session)`` measures
it. Backends are imported lazily from :data:`~edgekit.runtimes.registry.BACKENDS`. Nothing here
imports torch, onnx or coremltools' converters.
"""

from edgekit.runtimes.base import Placement, Session, TensorSpec
from edgekit.runtimes.registry import BACKENDS, available_backends, load

# Imported eagerly (it needs only numpy): the function must win over the submodule of the same
# name, which `import edgekit.runtimes.bench` would otherwise set as this package's `bench`.
from edgekit.runtimes.bench import bench  # noqa: E402  isort: skip

__all__ = ["load", "bench", "Session", "TensorSpec", "Placement", "BACKENDS", "available_backends"]
