"""Run under torchrun by test_train.py: train, then dump this rank's EMA weights and RNG state."""
import os
import sys
from pathlib import Path

import torch

import train_vtoonify


def main() -> None:
    out = Path(sys.argv[1])
    args = train_vtoonify.finalize_args(train_vtoonify.build_parser().parse_args(sys.argv[2:]))
    train_vtoonify.preflight(args)
    env = train_vtoonify.Dist(args.device)
    try:
        trainer = train_vtoonify.Trainer(args, env)
        trainer.run()
        state = {f"{n}.{k}": v for n in trainer.trainable_names for k, v in getattr(trainer.g_ema, n).state_dict().items()}
        state["_rng_state"] = torch.get_rng_state()
        out.mkdir(parents=True, exist_ok=True)
        torch.save(state, out / f"rank{env.rank}.pt")
    finally:
        env.close()


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    main()
