"""Turn a checkpoint's pointwise sub-voxel head into the 3^3 one it equals (centre tap only).

Usage: ``python experiments/subvoxel_head/widen_head.py CHECKPOINT MODEL_YAML OUT``: every weight
copied from CHECKPOINT, the head's first layer written into the centre tap of MODEL_YAML's
3^3 convolution (zeros elsewhere); checks the two models' logits are equal on the first val frame
before writing OUT. For `scaocc train --init OUT` (PLAN.md).
"""

from __future__ import annotations

import argparse

import torch

from scaocc_core.batch import collate
from scaocc_core.checkpoint import load_checkpoint, save_checkpoint
from scaocc_core.config import load_config
from scaocc_core.data.dataset import OccDataset
from scaocc_core.model.causal_occ import CausalOcc


def main() -> None:
    """Write the widened checkpoint after checking it predicts what the source does."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("--data", default="data/models/train_s0_256")
    args = parser.parse_args()
    source, _ = load_checkpoint(args.checkpoint)
    cfg = load_config(args.config)
    model = CausalOcc(cfg)
    state = source.state_dict()
    key = "voxel_net.head.mlp.0.weight"
    pointwise = state[key]  # hidden Cin
    conv = torch.zeros_like(model.state_dict()[key])  # hidden Cin 3 3 3
    conv[:, :, 1, 1, 1] = pointwise
    model.load_state_dict({**state, key: conv})
    inputs = collate([OccDataset(args.data, "val", cfg)[0]]).inputs
    with torch.no_grad():
        a, b = source.eval()(inputs).logits, model.eval()(inputs).logits
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
    save_checkpoint(args.out, model, cfg, meta={"widened_from": args.checkpoint})
    print(f"{args.out}: logits equal to {args.checkpoint}'s (max diff {float((a - b).abs().max()):.2e})")


if __name__ == "__main__":
    main()
