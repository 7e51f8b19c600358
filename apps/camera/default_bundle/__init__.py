"""The demo's shipped model bundle (quicksrnet_small_x2, TFLite + ONNX, input 1x3x240x320).

Data only: ``edgekit.json`` and the artifacts it lists. It is a package so that wheels carry
it; regenerate it with ``python -m edgekit.apps.camera.make_default_bundle``.
"""
