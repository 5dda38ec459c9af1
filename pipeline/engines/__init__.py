"""Engines out of PyTorch: ONNX export, ONNX Runtime, OpenVINO and TensorRT (``--engine
torch|onnxruntime|openvino|tensorrt``).

* :func:`get_engine` (:mod:`pipeline.engines.engine`): the engine by name, with one-line errors for an unknown
  name, a runtime that is not installed (naming the extra: ``pip install -e ".[openvino]"`` /
  ``".[onnxruntime]"``) and a precision it does not compute in; ``engine.vtoonify(...)`` and
  ``engine.parser(...)`` stand in for the two modules the pipeline calls.
* :mod:`pipeline.engines.export`: the ONNX export and its check (``python -m pipeline.engines.export``).
* :mod:`pipeline.engines.cache`: the export cache (keyed by content, atomic, locked).
* :mod:`pipeline.engines.runtimes`: the runtimes and their runners.
* :mod:`pipeline.engines.providers`: ONNX Runtime on a CUDA GPU (``--engine onnxruntime`` on CUDA: the CUDA
  provider; ``--engine tensorrt``: the TensorRT provider, float16 with ``--dtype float16``).

Importing this package imports neither ONNX nor a runtime.
"""
from pipeline.engines.engine import Engine, OnnxEngine, ParserEngine, VToonifyEngine, get_engine
from pipeline.engines.runtimes import ENGINES, EXTRAS, EngineNotInstalledError

__all__ = ["ENGINES", "EXTRAS", "Engine", "EngineNotInstalledError", "OnnxEngine", "ParserEngine", "VToonifyEngine",
           "get_engine"]
