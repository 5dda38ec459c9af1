"""Exemplar style codes (``exstyle_code.npy`` / ``refined_exstyle_code.npy``) loaded without running code.

The released files are ``np.save`` of a Python dict ``{style image name: float32 array (1, 18, 512)}``,
i.e. a 0-d object array whose payload is a pickle. ``np.load(allow_pickle=True)`` would execute any
callable a crafted file names; :func:`load_exstyle_codes` instead unpickles with an allow-list that
admits only what a dict of numpy arrays needs (numpy's array reconstructor, ``ndarray``, ``dtype``).
Insertion order defines the style index (``--style_id``).
"""
from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np

from model.errors import UserError

__all__ = ["StyleCodeError", "load_exstyle_codes", "save_exstyle_codes", "fit_rows"]


class StyleCodeError(UserError, ValueError):
    """The exstyle file is missing, unsafe, or not a dictionary of style codes."""


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden object {module}.{name}")


def _read_npy_object(path: Path):
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f, max_header_size=1 << 20)
        except (ValueError, OSError) as e:
            raise StyleCodeError(f"{path}: not a .npy file ({e})") from e
        if dtype != np.dtype(object) or shape != ():
            raise StyleCodeError(f"{path}: expected a saved dict of style codes, found an array {dtype} {shape}")
        try:
            return _RestrictedUnpickler(io.BytesIO(f.read())).load()
        except pickle.UnpicklingError as e:
            raise StyleCodeError(f"{path}: refusing to load: {e} (only a dict of numpy arrays is accepted)") from e
        except Exception as e:  # noqa: BLE001 - corrupt payload
            raise StyleCodeError(f"{path}: corrupt style-code file ({type(e).__name__}: {e})") from e


def load_exstyle_codes(path: str | os.PathLike, n_latent: int = 18, style_dim: int = 512) -> "OrderedDict[str, np.ndarray]":
    """Read an exstyle file into an ordered ``{name: float32 (1, n_latent, style_dim)}`` dict.

    Raises :class:`StyleCodeError` (naming the file and the entry) if the file is missing, contains anything but a
    dict of floating-point arrays of that shape with finite values, or is empty.
    """
    path = Path(path)
    if not path.is_file():
        raise StyleCodeError(f"exstyle file not found: {path}")
    obj = _read_npy_object(path)
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        obj = obj.item()  # np.save pickles the 0-d object array that wraps the dict
    if not isinstance(obj, dict):
        raise StyleCodeError(f"{path}: expected a dict of style codes, found {type(obj).__name__}")
    if not obj:
        raise StyleCodeError(f"{path}: the style-code dictionary is empty")
    codes: OrderedDict[str, np.ndarray] = OrderedDict()
    for name, code in obj.items():
        arr = np.asarray(code)
        if arr.dtype == object or arr.size != n_latent * style_dim:
            raise StyleCodeError(
                f"{path}: entry {name!r} has shape {arr.shape}; "
                f"a style code is ({n_latent}, {style_dim}) or (1, {n_latent}, {style_dim})"
            )
        if arr.dtype.kind != "f":
            raise StyleCodeError(f"{path}: entry {name!r} is {arr.dtype}; a style code is floating point (float32)")
        with np.errstate(over="ignore", invalid="ignore"):  # too large for float32: infinity, refused below
            code32 = arr.astype(np.float32).reshape(1, n_latent, style_dim)
        if not np.isfinite(code32).all():  # NaN codes render a black picture; inf too large for float32 alike
            bad = int(code32.size - np.isfinite(code32).sum())
            raise StyleCodeError(f"{path}: entry {name!r} has {bad} non-finite values (NaN or infinity); "
                                 "the file is damaged: fetch or build it again")
        codes[str(name)] = code32
    return codes


def save_exstyle_codes(path: str | os.PathLike, codes: "dict[str, np.ndarray]") -> None:
    """Write codes in the released format (``np.save`` of a dict), readable by the original code too."""
    np.save(path, dict(codes), allow_pickle=True)


def fit_rows(code, n_latent: int):
    """The first ``n_latent`` rows of a (B, N, D) code.

    Row k drives the same layer (conv1, then two convs and a ToRGB per resolution from 8 px up) in every
    StyleGAN2 generator, whatever its output size, so a 1024px pSp encoder's 18-row codes serve a smaller
    generator by dropping the rows of the resolutions it does not have.
    """
    if code.shape[1] < n_latent:
        raise StyleCodeError(f"a style code with {code.shape[1]} rows cannot drive a generator with {n_latent} W+ rows")
    return code[:, :n_latent]
