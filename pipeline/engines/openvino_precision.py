"""OpenVINO bfloat16 as mixed precision: the parts of VToonify whose rounding shows in the output stay float32.

With ``INFERENCE_PRECISION_HINT=bf16`` the CPU plugin runs every float32 node of the graph in bfloat16 (only the
graph's tail after the last convolution stays float32). The torch path's :meth:`VToonify.to_mixed_precision` keeps
float32 the style mapping and affine maps, the modulation / demodulation coefficients, the instance-norm
statistics and the RGB skip path. :func:`prepare_bf16` gives the CPU plugin the same split:

* **The style branch** (every float node that depends on ``style`` / ``d_s`` and not on the image ``x``: the W+
  mapping MLPs, the AdaIN and modulation affine maps, the demodulation coefficients, the degree MLP) becomes a
  model of its own, compiled in float32; its float32 outputs are inputs of the image model, so the image model's
  bfloat16 never rounds them. A per-node mark cannot do this: the plugin replaces ``MatMul`` by its own
  ``FullyConnected`` node and the mark is not copied to replacements.
* **The RGB skip path** of the image model (the nodes with a 3-channel 4-D output: the ToRGB convolutions with the
  skip sums the plugin fuses into them, the fusion skip convolutions, the skip's upsampling) carries OpenVINO's
  keep-the-original-precision runtime attribute (``precise`` in IR files, ``DisablePrecisionConversion`` in
  memory), which the CPU plugin's bfloat16 enforcement skips. The Python API cannot create that attribute, so it
  is read once from a one-node IR that names it and set on the nodes.

Everything else (the encoder, the residual and StyleGAN convolutions and their activations, the instance norms:
nearly all the FLOPs) runs in bfloat16. Measured on face-showing fill-rule VToonify-D, 256x256 (PSNR of the uint8
output against torch float32): whole-graph bfloat16 43.1 dB, style branch float32 49.6 dB, and the RGB path
float32 too 51.2 dB (torch's mixed precision 49.5 dB); VToonify-T 49.2, 52.7 and 52.8 dB (torch 52.5 dB). The
RGB gain comes from the ToRGB convolutions (the skip sum is fused into them): marking only the other RGB nodes
gains nothing, and marking only the ToRGB convolutions fails at inference in OpenVINO 2026.4 ("Convolution node ...
object is not initialized"), hence the whole 3-channel path. Marking the instance-norm statistics as well gained
nothing (50.7 dB). :func:`float32_nodes` lists what a compiled model runs in float32 (the tests check it).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

__all__ = ["SplitModel", "float32_nodes", "mark_keep_precision", "precision_sensitive", "prepare_bf16",
           "split_style_branch"]

# A one-node IR whose node carries the attribute in its serialized form (``<attribute name="precise" .../>``).
_MARKED_IR = b"""<?xml version="1.0"?>
<net name="mark" version="11"><layers>
<layer id="0" name="in" type="Parameter" version="opset1"><data shape="1" element_type="f32"/>
<output><port id="0" precision="FP32"><dim>1</dim></port></output></layer>
<layer id="1" name="marked" type="Relu" version="opset1"><rt_info><attribute name="precise" version="0"/></rt_info>
<input><port id="0" precision="FP32"><dim>1</dim></port></input><output><port id="1" precision="FP32"><dim>1</dim></port>
</output></layer>
<layer id="2" name="out" type="Result" version="opset1"><input><port id="0" precision="FP32"><dim>1</dim></port></input>
</layer></layers><edges><edge from-layer="0" from-port="0" to-layer="1" to-port="0"/>
<edge from-layer="1" from-port="1" to-layer="2" to-port="0"/></edges></net>"""

_NOT_COMPUTED = ("Constant", "Parameter", "Result")


@functools.cache
def _keep_precision_attribute(ov: Any) -> tuple[str, Any] | None:
    """The runtime-info key and value of OpenVINO's keep-the-original-precision mark (``None`` if this OpenVINO
    reads the IR's attribute as something else); read once per process, not at every compile."""
    node = next(n for n in ov.Core().read_model(_MARKED_IR).get_ops() if n.get_friendly_name() == "marked")
    items = list(node.get_rt_info().items())
    return items[0] if len(items) == 1 else None


def mark_keep_precision(ov: Any, nodes) -> int:
    """Mark ``nodes`` so that the CPU plugin keeps them in their original (float32) precision; returns how many
    (0 where this OpenVINO has no such attribute)."""
    attribute = _keep_precision_attribute(ov)
    if attribute is None:
        return 0
    key, value = attribute
    count = 0
    for node in nodes:
        node.set_rt_info(value, key)
        count += 1
    return count


def _is_rgb(output) -> bool:
    shape = output.get_partial_shape()
    return shape.rank.is_static and shape.rank.get_length() == 4 and shape[1].is_static and shape[1].get_length() == 3


def precision_sensitive(node) -> bool:
    """Whether an image-model node stays float32: a float node on the 3-channel RGB skip path."""
    if node.get_type_name() in _NOT_COMPUTED:
        return False
    out = node.output(0)
    return out.get_element_type().get_type_name() == "f32" and _is_rgb(out)


@dataclass
class SplitModel:
    """``style``: the float32 model of the style branch (``None`` when every node depends on an image), its
    inputs named as the original's; ``image``: the rest, whose extra inputs are the style model's outputs (same
    names, in order)."""

    style: Any
    image: Any
    links: list[str]


def _reachable(start, neighbours) -> set[int]:
    """The ids of the nodes reached from ``start`` (themselves included) by following ``neighbours(node)``."""
    seen: set[int] = set()
    stack = list(start)
    while stack:
        node = stack.pop()
        if node.get_instance_id() in seen:
            continue
        seen.add(node.get_instance_id())
        stack.extend(neighbours(node))
    return seen


def _dependents(params) -> set[int]:
    """The ids of the nodes that depend on any of ``params``."""
    return _reachable(params, lambda node: [t.get_node() for out in node.outputs() for t in out.get_target_inputs()])


def _ancestors(nodes) -> set[int]:
    """The ids of the nodes that ``nodes`` depend on."""
    return _reachable(nodes, lambda node: [i.get_source_output().get_node() for i in node.inputs()])


def split_style_branch(ov: Any, model) -> SplitModel:
    """Cut ``model`` (modified in place) into its style branch and its image part (see :class:`SplitModel`).

    The style branch: the float nodes that depend on a non-image input (``style``, ``d_s``) and on no image
    input (4-D). Only its float32 outputs are cut: shape arithmetic stays in the image part (so its shapes
    stay tied to the inputs' dimensions), and so does every constant subgraph (weights stay constants)."""
    params = model.get_parameters()
    image_params = [p for p in params if p.get_partial_shape().rank.get_length() == 4]
    image_ids = _dependents(image_params)
    style_ids = _dependents([p for p in params if p.get_instance_id() not in image_ids]) - image_ids
    links = []  # (float32 output of a style-branch node, the image-part inputs it feeds)
    for node in model.get_ordered_ops():
        if node.get_instance_id() not in style_ids or node.get_type_name() in _NOT_COMPUTED:
            continue
        for out in node.outputs():
            if out.get_element_type().get_type_name() != "f32":
                continue
            targets = [t for t in out.get_target_inputs() if t.get_node().get_instance_id() in image_ids]
            if targets:
                links.append((out, targets))
    if not links:
        return SplitModel(None, model, [])
    names = [f"style_branch_{i}" for i in range(len(links))]
    results = []
    for name, (out, _) in zip(names, links):
        result = ov.opset13.result(out)
        result.output(0).get_tensor().set_names({name})
        results.append(result)
    style_inputs = style_ids | _ancestors(results)
    style = ov.Model(results, [p for p in params if p.get_instance_id() in style_inputs], "style_branch")
    new_params = []
    for name, (out, targets) in zip(names, links):
        # a fresh shape: the original's dimension symbols would tie it to the image's dimensions
        shape = ov.PartialShape([d.get_length() if d.is_static else -1 for d in out.get_partial_shape()])
        param = ov.opset13.parameter(shape, out.get_element_type(), name=name)
        param.output(0).get_tensor().set_names({name})
        for t in targets:
            t.replace_source_output(param.output(0))
        new_params.append(param)
    used = _ancestors(model.get_results())
    image = ov.Model(model.get_results(), [p for p in params if p.get_instance_id() in used] + new_params, "image")
    return SplitModel(style, image, names)


def prepare_bf16(ov: Any, model) -> SplitModel:
    """Split ``model`` (in place) and mark the image part's precision-sensitive nodes (see the module's doc). A
    model without a style branch (the face parser) is left whole and unmarked."""
    split = split_style_branch(ov, model)
    if split.style is not None:
        mark_keep_precision(ov, [n for n in split.image.get_ordered_ops() if precision_sensitive(n)])
    return split


def float32_nodes(compiled) -> dict[str, list[str]]:
    """The computing nodes of a compiled model's execution graph that run in float32, by layer type -> names
    (inputs, outputs, constants and layout reorders left out)."""
    found: dict[str, list[str]] = {}
    for node in compiled.get_runtime_model().get_ops():
        info = node.get_rt_info()
        kind = info["layerType"].astype(str)
        if kind in ("Input", "Output", "Const", "Reorder", "Reshape"):
            continue
        if info["runtimePrecision"].astype(str) == "f32":
            found.setdefault(kind, []).append(node.get_friendly_name())
    return found
