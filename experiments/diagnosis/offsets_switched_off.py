"""Val mIoU of a scaocc checkpoint with its learnt camera offsets switched off at inference.

Usage: python experiments/diagnosis/offsets_switched_off.py CHECKPOINT DATA SPLIT OUT.json [NOISE]
(as trained, without the global pose correction, without the per-point offsets, without both)."""
import json, sys, torch
from scaocc_core.checkpoint import load_checkpoint
from scaocc_core.data.dataset import OccDataset
from scaocc_core.training.evaluate import evaluate_model
from scaocc_core.training.synthdata import cache_synthetic_frames
from scaocc_core.model.offsets import CameraOffsets
from scaocc_core.data.noise import CameraNoise
from scaocc_core.training.evaluate import NOISE_SEED
torch.set_num_threads(1)
ckpt, data, split = sys.argv[1], sys.argv[2], sys.argv[3]
model, cfg = load_checkpoint(ckpt)
noise = CameraNoise.parse(sys.argv[5]) if len(sys.argv) > 5 else None
ds = cache_synthetic_frames(OccDataset(data, split, cfg, camera_noise=noise, noise_seed=NOISE_SEED))
head = model.offset_head
orig = head.forward
res = {}
for mode in ("as_trained", "no_global", "no_local", "none"):
    def fwd(feat, ego_T_cam, mode=mode):
        o = orig(feat, ego_T_cam)
        rot, tr, fd = o.rotation, o.translation, o.frustum_delta
        if mode in ("no_global", "none"):
            rot, tr = torch.zeros_like(rot), torch.zeros_like(tr)
        if mode in ("no_local", "none"):
            fd = torch.zeros_like(fd)
        return CameraOffsets(rot, tr, fd)
    head.forward = fwd
    with torch.no_grad():
        m = evaluate_model(model, ds, torch.device("cpu"), progress=False).summary()
    res[mode] = {k: m[k] for k in ("miou", "iou")} | {"car": m["per_class"]["car"]}
    print(mode, res[mode], flush=True)
json.dump(res, open(sys.argv[4], "w"), indent=1)
