"""Safe, strict checkpoint loading with readable errors.

* :func:`safe_load` never unpickles arbitrary objects: it uses ``torch.load(weights_only=True)`` and
  allow-lists only the few plain containers that released files contain (``argparse.Namespace`` for
  option objects). A file needing anything else is rejected with an explanation, never executed.
* :func:`extract_state_dict` unwraps the released containers (``{'g_ema': ...}``, ``{'state_dict': ...}``)
  and strips a DistributedDataParallel ``module.`` prefix, each remap named in the returned report.
* :func:`load_state_dict_strict` loads with ``strict=True`` semantics but raises a
  :class:`CheckpointMismatchError` that names the missing/unexpected keys and recognises the common
  mistakes (a VToonify-T file for VToonify-D and vice versa, an encoder-only ``pretrain.pt``, ...).
"""
from __future__ import annotations

import argparse
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from model.errors import UserError

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "safe_load",
    "extract_state_dict",
    "detect_checkpoint_kind",
    "infer_backbone",
    "load_state_dict_strict",
    "build_from_state_dict",
    "infer_generator_config",
    "infer_vtoonify_config",
    "vtoonify_config",
    "load_vtoonify",
    "load_bisenet",
    "load_stylegan2",
    "load_dualstylegan",
]

# Non-tensor objects that may appear in released checkpoints and are safe to rebuild.
SAFE_GLOBALS = [argparse.Namespace]


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file could not be read or is not what the caller expected."""


class CheckpointMismatchError(CheckpointError):
    """The keys of a state_dict do not match the model."""

    def __init__(self, message: str, missing: list[str], unexpected: list[str], shape_mismatch: list[str]):
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.shape_mismatch = shape_mismatch


def safe_load(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``).

    With ``mmap`` the tensors are mapped from the file (copy-on-write) instead of read into allocated memory: a
    model built from them by assignment holds file pages, which are given back to the system exactly when the
    model is freed. Read into the heap, the same bytes can stay resident after the model is gone (the C
    allocator keeps mid-sized blocks), which raised the peak memory of later work. Files that cannot be mapped
    (the legacy non-zip format) are read as usual. A file replaced by a rename (as the downloads and
    ``train_*.py`` write theirs) is safe while mapped; one truncated or rewritten in place is not.

    Raises :class:`CheckpointError` with the file name if the file is missing, not a torch file, or
    contains objects that would require executing code to unpickle.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            if mmap:
                try:
                    return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
                except Exception:  # noqa: BLE001 - not mappable: the plain load below reads it or says what is wrong
                    pass
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - turned into a readable error
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            # torch's own message suggests turning the safe loader off; only the offending object is kept.
            found = re.search(r"(?:Unsupported global|unsupported GLOBAL|GLOBAL)\W+([\w.]+)", str(e))
            what = f" ({found[1]})" if found else ""
            raise CheckpointError(
                f"{path}: refusing to load: the file contains a Python object{what} that is not a tensor or a plain "
                f"container, and loading it could execute code from the file; re-save it as a plain state_dict."
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({msg})") from e


def _strip_prefix(sd: Mapping[str, Any], prefix: str) -> "OrderedDict[str, Any]":
    return OrderedDict((k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in sd.items())


def extract_state_dict(obj: Any, *, key: str | None = None,
                       source: str = "checkpoint") -> tuple["OrderedDict[str, torch.Tensor]", list[str]]:
    """Unwrap a loaded checkpoint into a flat state_dict.

    Looks for ``key`` if given, else ``'g_ema'``, then ``'state_dict'``, else treats ``obj`` itself as the
    state_dict. Returns ``(state_dict, remaps)`` where ``remaps`` lists every transformation applied.
    """
    remaps: list[str] = []
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, got {type(obj).__name__}")
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"{source}: no entry {key!r} (top-level keys: {sorted(map(str, obj))[:10]})")
        sd = obj[key]
        remaps.append(f"took checkpoint[{key!r}]")
    elif "g_ema" in obj and isinstance(obj["g_ema"], Mapping):
        sd = obj["g_ema"]
        remaps.append("took checkpoint['g_ema']")
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        sd = obj["state_dict"]
        remaps.append("took checkpoint['state_dict']")
    else:
        sd = obj
    if not all(isinstance(v, torch.Tensor) for v in sd.values()):
        bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)][:5]
        raise CheckpointError(f"{source}: not a state_dict (non-tensor entries {bad})")
    sd = OrderedDict(sd)
    if sd and all(k.startswith("module.") for k in sd):
        sd = _strip_prefix(sd, "module.")
        remaps.append("stripped DistributedDataParallel prefix 'module.'")
    return sd, remaps


def detect_checkpoint_kind(sd: Mapping[str, Any]) -> str:
    """Classify a state_dict by its keys.

    Returns one of ``'vtoonify_dualstylegan'``, ``'vtoonify_toonify'``, ``'vtoonify_encoder'`` (a
    ``pretrain.pt``), ``'dualstylegan'``, ``'stylegan2'``, ``'psp'``, ``'bisenet'`` or ``'unknown'``.
    """
    keys = set(sd)
    if any(k.startswith("generator.generator.") for k in keys) and any(k.startswith("encoder.") for k in keys):
        return "vtoonify_dualstylegan"
    if any(k.startswith("generator.convs.") for k in keys) and any(k.startswith("encoder.") for k in keys):
        return "vtoonify_toonify"
    if "5.weight" in keys and "0.0.weight" in keys and any(k.startswith("4.") for k in keys):
        return "vtoonify_encoder"
    if any(k.startswith("generator.convs.") for k in keys) and any(k.startswith("res.") for k in keys):
        return "dualstylegan"
    if "input.input" in keys and any(k.startswith("convs.") for k in keys):
        return "stylegan2"
    if any(k.startswith("encoder.input_layer.") or k.startswith("input_layer.") for k in keys) and any(
        "styles." in k for k in keys
    ):
        return "psp"
    if any(k.startswith("cp.resnet.") for k in keys):
        return "bisenet"
    return "unknown"


_KIND_HINTS = {
    "vtoonify_dualstylegan": "a VToonify-D checkpoint (use backbone='dualstylegan' / --backbone dualstylegan)",
    "vtoonify_toonify": "a VToonify-T checkpoint (use backbone='toonify' / --backbone toonify)",
    "vtoonify_encoder": "an encoder-only pretrain.pt from training stage 1, not a full VToonify model "
    "(load it into model.encoder, or use a trained vtoonify*.pt)",
    "dualstylegan": "a DualStyleGAN generator.pt (a training teacher), not a VToonify model",
    "stylegan2": "a StyleGAN2 generator (e.g. stylegan2-ffhq-config-f.pt or a Toonify finetune-*.pt), not a VToonify model",
    "psp": "a pSp style encoder (encoder.pt); load it with util.load_psp_standalone",
    "bisenet": "a BiSeNet face-parsing model (faceparsing.pth)",
}


def infer_backbone(sd: Mapping[str, Any]) -> str:
    """``'dualstylegan'`` or ``'toonify'`` for a VToonify state_dict, else :class:`CheckpointError`."""
    kind = detect_checkpoint_kind(sd)
    if kind == "vtoonify_dualstylegan":
        return "dualstylegan"
    if kind == "vtoonify_toonify":
        return "toonify"
    raise CheckpointError(f"not a VToonify checkpoint: this looks like {_KIND_HINTS.get(kind, 'an unknown model')}")


def _summarise(keys: list[str], n: int = 8) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def load_state_dict_strict(
    module: nn.Module, sd: Mapping[str, torch.Tensor], *, expected_kind: str | None = None, source: str = "checkpoint"
) -> None:
    """``module.load_state_dict(sd, strict=True)`` with a readable error.

    On any missing, unexpected or wrongly shaped key raises :class:`CheckpointMismatchError` naming them,
    and, when the keys identify a different kind of model than ``expected_kind``, says what the file is.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shape_mismatch = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shape_mismatch:
        kind = detect_checkpoint_kind(sd)
        lines = [f"{source}: state_dict does not match {type(module).__name__}"]
        if expected_kind is not None and kind != expected_kind and kind in _KIND_HINTS:
            lines.append(f"  this file is {_KIND_HINTS[kind]}")
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_summarise(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_summarise(unexpected)}")
        if shape_mismatch:
            lines.append(f"  shape mismatches ({len(shape_mismatch)}): {_summarise(shape_mismatch, 4)}")
            lines.append("  (a model built with another output size or channel multiplier?)")
        raise CheckpointMismatchError("\n".join(lines), missing, unexpected, shape_mismatch)
    module.load_state_dict(sd, strict=True)


# ---------------------------------------------------------------------------------------------------
# Building models straight from checkpoints
# ---------------------------------------------------------------------------------------------------
def build_from_state_dict(factory, sd: Mapping[str, torch.Tensor], *, expected_kind: str | None = None,
                          source: str = "checkpoint") -> nn.Module:
    """Construct ``factory()`` without random initialisation and load ``sd`` into it strictly.

    The module is built on the ``meta`` device (no memory, no RNG work) and the checkpoint's tensors are
    assigned to it; this avoids initialising hundreds of millions of parameters only to overwrite them.
    Falls back to a normal construction if the module holds state the checkpoint does not cover, except
    non-persistent buffers that ``factory`` filled from real tensors (they are not on ``meta``).
    """
    with torch.device("meta"):
        module = factory()
    own = module.state_dict()
    covered = set(own) == set(sd) and all(tuple(own[k].shape) == tuple(sd[k].shape) for k in own)
    not_in_sd = [n for n, t in list(module.named_parameters()) + list(module.named_buffers())
                 if n not in own and t.is_meta]
    if not covered or not_in_sd:
        module = factory()
        load_state_dict_strict(module, sd, expected_kind=expected_kind, source=source)
        return module
    module.load_state_dict(sd, strict=True, assign=True)
    return module


def infer_generator_config(sd: Mapping[str, torch.Tensor], prefix: str = "") -> dict:
    """Constructor arguments of a StyleGAN2 ``Generator`` from its state_dict keys and shapes.

    Returns ``dict(size, style_dim, n_mlp, channel_multiplier, channel_max)``.
    """
    try:
        own = [k[len(prefix):] for k in sd if k.startswith(prefix)]
        n_rgb = len({k.split(".")[1] for k in own if k.startswith("to_rgbs.")})
        n_mlp = len({k for k in own if k.startswith("style.") and k.endswith(".weight")})
        style_dim = sd[prefix + "style.1.weight"].shape[1]
        size = 2 ** (n_rgb + 2)
        channel_max = sd[prefix + "input.input"].shape[1]
        last = sd[f"{prefix}to_rgbs.{n_rgb - 1}.conv.weight"].shape[2]
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"not a StyleGAN2 generator state_dict (missing {e})") from e
    channel_multiplier = max(1, last * size // 16384)
    return dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=channel_multiplier, channel_max=channel_max)


def infer_vtoonify_config(sd: Mapping[str, torch.Tensor]) -> dict:
    """Constructor arguments of ``VToonify`` for a full VToonify state_dict (backbone, sizes, widths)."""
    backbone = infer_backbone(sd)
    gen = infer_generator_config(sd, "generator.generator." if backbone == "dualstylegan" else "generator.")
    num_res_layers = len({k.split(".")[2] for k in sd if k.startswith("encoder.4.")})
    return dict(
        in_size=gen["size"] // 4,
        out_size=gen["size"],
        img_channels=sd["encoder.5.weight"].shape[0],
        style_channels=gen["style_dim"],
        num_mlps=gen["n_mlp"],  # DualStyleGAN's extrinsic MLP depth (n_mlp - 6) follows from it
        channel_multiplier=gen["channel_multiplier"],
        num_res_layers=num_res_layers,
        backbone=backbone,
        channel_max=gen["channel_max"],
    )


_BACKBONE_NAMES = {"dualstylegan": "VToonify-D", "toonify": "VToonify-T"}


def load_vtoonify(path: str | os.PathLike, backbone: str | None = None, device: Any = "cpu", mmap: bool = False) -> nn.Module:
    """Load a released (or trained) VToonify checkpoint, ``{'g_ema': state_dict}`` or a bare state_dict.

    The backbone is inferred from the keys, the sizes from the file's ``'config'`` entry where it has one
    (files written by ``train_vtoonify.py``), else from the keys too; if ``backbone`` is given and disagrees, a
    :class:`CheckpointError` says which backbone the file is for. Returns the model in eval mode with
    gradients disabled, on ``device``. ``mmap``: map the weights from the file (see :func:`safe_load`); a model
    then cast to a lower precision should copy the float32 tensors it keeps (``pipeline.stylize`` does), or the
    whole file stays mapped, its discarded float32 weights included, as long as any of them lives.
    """
    from model.vtoonify import VToonify

    obj = safe_load(path, mmap=mmap)
    sd, _ = extract_state_dict(obj, source=str(path))
    kind = detect_checkpoint_kind(sd)
    if kind not in ("vtoonify_dualstylegan", "vtoonify_toonify"):
        raise CheckpointError(f"{path}: not a VToonify checkpoint: this file is {_KIND_HINTS.get(kind, 'of an unknown kind')}")
    found = infer_backbone(sd)
    if backbone is not None and backbone != found:
        raise CheckpointError(
            f"{path} is a {_BACKBONE_NAMES[found]} checkpoint (backbone '{found}') but backbone '{backbone}' was requested; "
            f"use --backbone {found}"
        )
    cfg = vtoonify_config(obj, sd, source=str(path))
    model = build_from_state_dict(lambda: VToonify(**cfg), sd, expected_kind=kind, source=str(path))
    return model.eval().requires_grad_(False).to(device)


def vtoonify_config(obj: Any, sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict:
    """``VToonify``'s constructor arguments for a loaded checkpoint ``obj`` with state_dict ``sd``.

    A file written by ``train_vtoonify.py`` records them under ``'config'``; they are used (and must name
    only ``VToonify`` arguments, with plain int/str values). What the entry leaves out, or a file without
    one (the released files), is inferred from the keys and shapes (:func:`infer_vtoonify_config`).
    """
    import inspect

    from model.vtoonify import VToonify

    saved = obj.get("config") if isinstance(obj, Mapping) else None
    if saved is None:
        return infer_vtoonify_config(sd)
    allowed = set(inspect.signature(VToonify).parameters)
    if (not isinstance(saved, Mapping) or not set(saved) <= allowed
            or not all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in saved.values())):
        raise CheckpointError(f"{source}: its 'config' entry is not a dict of VToonify arguments ({sorted(allowed)}): "
                              f"{saved!r}")
    try:
        inferred = infer_vtoonify_config(sd)
    except (CheckpointError, KeyError):  # incomplete weights: the strict load names what is missing
        inferred = {}
    cfg = {**inferred, **saved}
    try:
        with torch.device("meta"):
            VToonify(**cfg)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: its 'config' entry {dict(saved)} does not describe a VToonify ({e})") from e
    return cfg


def load_bisenet(path: str | os.PathLike, device: Any = "cpu", mmap: bool = False) -> nn.Module:
    """Load ``faceparsing.pth`` (a bare BiSeNet(19) state_dict) in eval mode, gradients disabled; ``mmap`` as
    :func:`load_vtoonify` has it."""
    from model.bisenet.model import BiSeNet

    sd, _ = extract_state_dict(safe_load(path, mmap=mmap), source=str(path))
    if detect_checkpoint_kind(sd) != "bisenet":
        raise CheckpointError(f"{path}: not a BiSeNet face-parsing checkpoint: this file is "
                              f"{_KIND_HINTS.get(detect_checkpoint_kind(sd), 'of an unknown kind')}")
    n_classes = sd["conv_out.conv_out.weight"].shape[0]
    model = build_from_state_dict(lambda: BiSeNet(n_classes=n_classes), sd, expected_kind="bisenet", source=str(path))
    return model.eval().requires_grad_(False).to(device)


def _load_teacher(path, key: str, kind: str, factory_from_sd, device) -> nn.Module:
    sd, _ = extract_state_dict(safe_load(path), key=key or None, source=str(path))
    found = detect_checkpoint_kind(sd)
    if found != kind:
        raise CheckpointError(f"{path}: expected {_KIND_HINTS[kind].split(' (')[0]}, but this file is "
                              f"{_KIND_HINTS.get(found, 'of an unknown kind')}")
    model = build_from_state_dict(factory_from_sd(sd), sd, expected_kind=kind, source=str(path))
    return model.eval().requires_grad_(False).to(device)


def load_stylegan2(path: str | os.PathLike, device: Any = "cpu", key: str = "g_ema") -> nn.Module:
    """Load a StyleGAN2 generator (``stylegan2-ffhq-config-f.pt``, Toonify ``finetune-*.pt``), size inferred."""
    from model.stylegan.model import Generator

    return _load_teacher(path, key, "stylegan2", lambda sd: lambda: Generator(**infer_generator_config(sd)), device)


def load_dualstylegan(path: str | os.PathLike, device: Any = "cpu", key: str = "g_ema") -> nn.Module:
    """Load a DualStyleGAN ``generator.pt`` (a VToonify-D training teacher), size inferred."""
    from model.dualstylegan import DualStyleGAN

    def factory(sd):
        cfg = infer_generator_config(sd, "generator.")
        res_index = sum(1 for k in sd if k.startswith("res.") and k.endswith(".norm.style.weight")) - 1
        return lambda: DualStyleGAN(cfg["size"], cfg["style_dim"], cfg["n_mlp"], cfg["channel_multiplier"],
                                    res_index=res_index, channel_max=cfg["channel_max"])

    return _load_teacher(path, key, "dualstylegan", factory, device)
