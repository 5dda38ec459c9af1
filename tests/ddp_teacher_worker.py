"""Run under torchrun by test_train_style.py: train_style.py's teacher, then its two VToonify-T stages replaced
by stand-ins that each open a ``Dist`` (as ``train_vtoonify.main`` does), sum over the processes and close it:
the stages must find the teacher's process group, and closing theirs must leave it open."""
import json
import os
import sys
from pathlib import Path

import train_style
import train_vtoonify
from training.dist import Dist


def main() -> int:
    out = Path(sys.argv[1])
    sums = []

    def stage(argv):
        env = Dist("cpu")
        try:
            sums.append(env.sum([1.0, float(env.rank)]))
        finally:
            env.close()
        return 0

    train_vtoonify.main = stage
    rc = train_style.main(sys.argv[2:])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{os.environ['RANK']}.json").write_text(json.dumps({"rc": rc, "stage_sums": sums}))
    return rc


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    sys.exit(main())
