"""ResNet encoder: torchvision / mmdet key names load; mismatches are refused."""

from __future__ import annotations

import pytest
import torch

from scaocc_core.config import EncoderConfig
from scaocc_core.model.encoder import ImageEncoder, ResNet, load_encoder_weights, load_resnet_state_dict


@pytest.mark.parametrize("depth,channels", [(18, [64, 128, 256, 512]), (34, [64, 128, 256, 512]),
                                            (50, [256, 512, 1024, 2048])])
def test_resnet_stage_channels_match_torchvision(depth, channels):
    assert ResNet(depth).out_channels == channels


def test_resnet50_parameter_names_follow_torchvision():
    names = set(ResNet(50).state_dict())
    for key in ["conv1.weight", "bn1.running_mean", "layer1.0.conv3.weight", "layer1.0.downsample.0.weight",
                "layer1.0.downsample.1.bias", "layer4.2.bn3.weight", "layer3.5.conv2.weight"]:
        assert key in names
    assert sum(v.numel() for k, v in ResNet(50).named_parameters()) == 23_508_032  # torchvision minus fc


def test_load_mmdet_style_checkpoint(tmp_path):
    source = ResNet(18)
    for p in source.parameters():
        torch.nn.init.normal_(p)
    state = {f"img_backbone.{k}": v for k, v in source.state_dict().items()}
    state["img_backbone.fc.weight"] = torch.zeros(1000, 512)  # classifier is dropped
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": state}, path)
    target = ResNet(18)
    missing = load_resnet_state_dict(target, path)
    assert missing == []
    assert torch.equal(target.layer3[1].conv2.weight, source.layer3[1].conv2.weight)


def test_mismatched_depth_is_refused():
    with pytest.raises(ValueError, match="shape"):
        load_resnet_state_dict(ResNet(50), ResNet(18).state_dict())


def test_encoder_output_stride_and_pretrained_config(tmp_path):
    torch.save(ResNet(18, 16).state_dict(), tmp_path / "w.pth")
    cfg = EncoderConfig(depth=18, width=16, stride=16, neck_channels=8, pretrained=str(tmp_path / "w.pth"))
    enc = ImageEncoder(cfg)
    assert load_encoder_weights(enc, cfg.pretrained) == []
    out = enc(torch.rand(1, 2, 3, 64, 96))
    assert out.shape == (1, 2, 8, 4, 6)
    torch.save(enc.state_dict(), tmp_path / "enc.pt")  # what `scaocc pretrain` writes
    other = ImageEncoder(cfg)
    load_encoder_weights(other, tmp_path / "enc.pt")
    assert torch.equal(other.neck[0].weight, enc.neck[0].weight)
    with pytest.raises(ValueError, match="does not match"):
        load_encoder_weights(ImageEncoder(EncoderConfig(depth=18, width=16, stride=16, neck_channels=16)),
                             tmp_path / "enc.pt")
