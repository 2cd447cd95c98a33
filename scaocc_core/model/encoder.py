"""Stage 1: image encoder. A plain-PyTorch ResNet-18/34/50 plus a neck to the output stride.

Parameter names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ``downsample.0``),
so :func:`load_resnet_state_dict` accepts torchvision and mmdet ResNet checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scaocc_core.config import EncoderConfig

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: N C H W."""
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 bottleneck with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.downsample = _shortcut(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: N C H W."""
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


_LAYOUT: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ResNet trunk returning the stride-4/8/16/32 feature maps (no classifier)."""

    def __init__(self, depth: int, width: int = 64) -> None:
        super().__init__()
        block, counts = _LAYOUT[depth]
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        self.out_channels: list[int] = []
        for i, count in enumerate(counts):
            w = width * 2**i
            blocks = []
            for j in range(count):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.out_channels.append(cin)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x``: N 3 H W -> feature maps at strides 4, 8, 16, 32."""
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        feats = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            feats.append(x)
        return feats


class ImageEncoder(nn.Module):
    """Normalises RGB in [0, 1], runs the ResNet and fuses two levels to ``stride``.

    Input ``b n 3 H W``; output ``b n C h w`` with ``C = neck_channels`` and
    ``h, w = H / stride, W / stride``.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNet(cfg.depth, cfg.width)
        self.level = {8: 1, 16: 2, 32: 3}[cfg.stride]  # index into the stride-4..32 list
        c_hi = self.backbone.out_channels[self.level]
        c_lo = self.backbone.out_channels[self.level + 1] if self.level < 3 else 0
        self.neck = nn.Sequential(
            nn.Conv2d(c_hi + c_lo, cfg.neck_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cfg.neck_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(cfg.neck_channels, cfg.neck_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cfg.neck_channels),
            nn.ReLU(inplace=True),
        )
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        """``images``: b n 3 H W in [0, 1] -> ``b n C h w``."""
        b, n = images.shape[:2]
        x = images.flatten(0, 1)  # (b n) 3 H W
        x = (x - self.mean) / self.std
        feats = self.backbone(x)
        hi = feats[self.level]
        if self.level < 3:
            lo = F.interpolate(feats[self.level + 1], size=hi.shape[-2:], mode="bilinear", align_corners=False)
            hi = torch.cat([hi, lo], dim=1)
        out = self.neck(hi)
        return out.unflatten(0, (b, n))  # b n C h w


def load_encoder_weights(encoder: ImageEncoder, path: str | Path) -> list[str]:
    """Initialise ``encoder`` from ``path`` (``encoder.pretrained``); returns the keys left missing.

    A file written by ``scaocc pretrain`` (keys ``backbone.*`` and ``neck.*``) restores the
    whole encoder and must match it exactly; any other file is read as a torchvision or
    mmdet ResNet (:func:`load_resnet_state_dict`). Training calls this once, before the first
    step; a checkpoint already holds the weights and never reads the file again.
    """
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(raw).__name__}")
    if any(isinstance(k, str) and k.startswith("neck.") for k in raw):
        try:
            encoder.load_state_dict(raw)
        except RuntimeError as exc:
            raise ValueError(f"{path}: pretrained encoder does not match encoder config: {exc}") from exc
        log.info("loaded the pretrained encoder %s", path)
        return []
    return load_resnet_state_dict(encoder.backbone, raw)


def load_resnet_state_dict(backbone: ResNet, source: str | Path | dict[str, Tensor]) -> list[str]:
    """Load torchvision or mmdet ResNet weights into ``backbone``.

    Accepts a path (``.pth``; loaded with ``weights_only=True``) or a state dict. Prefixes
    ``backbone.``, ``img_backbone.`` and ``module.`` are stripped, the classifier ``fc.*`` is
    dropped. Returns the backbone keys that the file did not provide; raises ``ValueError``
    on a shape mismatch (e.g. a ResNet-18 file for a ResNet-50 backbone).
    """
    state: dict[str, Tensor]
    if isinstance(source, dict):
        state = source
    else:
        raw = torch.load(source, map_location="cpu", weights_only=True)
        if not isinstance(raw, dict):
            raise ValueError(f"{source}: expected a state dict, got {type(raw).__name__}")
        state = raw.get("state_dict") or raw.get("model") or raw
    cleaned: dict[str, Tensor] = {}
    for key, value in state.items():
        for prefix in ("module.", "img_backbone.", "backbone."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        if key.startswith("fc.") or not isinstance(value, Tensor):
            continue
        cleaned[key] = value
    own = backbone.state_dict()
    for key, value in cleaned.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(f"pretrained {key}: shape {tuple(value.shape)} != {tuple(own[key].shape)}")
    result = backbone.load_state_dict({k: v for k, v in cleaned.items() if k in own}, strict=False)
    unexpected = sorted(set(cleaned) - set(own))
    if unexpected:
        log.warning("ignored %d unexpected pretrained keys, e.g. %s", len(unexpected), unexpected[:3])
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        log.warning("pretrained weights lack %d backbone keys, e.g. %s", len(missing), missing[:3])
    return missing
