"""benchmarks/make_fill_checkpoints.py: the fill-rule helper networks the benchmarks and the device check write."""
from __future__ import annotations

import pytest
import torch


def test_ensure_fill_helper_writes_the_fill_file_once_and_whole(tmp_path, frozen_helpers):
    """The benchmarks' and the device check's helper networks (a call with a stale signature once crashed the
    device check where no helper was given): the same weights as the suite's fill-rule BiSeNet, under the
    released name, no temporary file left, and an existing file kept as it is."""
    from benchmarks.make_fill_checkpoints import ensure_fill_helper
    from model.checkpoint import safe_load

    path = ensure_fill_helper("faceparsing", folder=tmp_path / "ckpt")
    assert path == tmp_path / "ckpt" / "faceparsing.pth" and [p.name for p in path.parent.iterdir()] == [path.name]
    ours, ref = safe_load(path), safe_load(frozen_helpers["faceparsing"])
    assert ours.keys() == ref.keys() and all(torch.equal(ours[k], ref[k]) for k in ref)
    path.write_bytes(b"kept")
    assert ensure_fill_helper("faceparsing", folder=tmp_path / "ckpt").read_bytes() == b"kept"
    with pytest.raises(KeyError):
        ensure_fill_helper("vgg", folder=tmp_path)
