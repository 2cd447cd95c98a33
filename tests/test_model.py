"""Model composition: shapes, zero-initialised offsets, normalised convolution, checkpoints."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scaocc_core.batch import Targets
from scaocc_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from scaocc_core.config import (
    ConfigError,
    DepthConfig,
    OffsetConfig,
    VoxelNetConfig,
    load_config,
    model_config_from_dict,
)
from scaocc_core.grid import NUM_CLASSES
from scaocc_core.losses import OccupancyLoss, depth_loss
from scaocc_core.model.causal_occ import CausalOcc
from scaocc_core.model.depthwise import (
    depthwise3x3x3,
    depthwise3x3x3_banded,
    depthwise3x3x3_channels_last,
    depthwise3x3x3_reference,
    kernel_gradient,
    kernel_gradient_reference,
)
from scaocc_core.model.voxel_net import NormalizedConv3d, Propagation, SubVoxelHead, channels_last

from .fixtures import camera_inputs, micro_config


def test_forward_shapes():
    cfg = micro_config()
    model = CausalOcc(cfg).eval()
    out = model(camera_inputs(cfg, batch=2))
    X, Y, Z = cfg.grid.size
    assert out.logits.shape == (2, 18, X, Y, Z)
    assert out.depth.shape == (2, 2, cfg.depth.groups, cfg.depth.num_bins, 2, 4)
    assert torch.allclose(out.depth.sum(3), torch.ones(()))
    assert out.feat3d.shape == (2, cfg.depth.context_channels, X, Y, Z)
    assert out.feat3d_splat.abs().sum() > 0


def test_zero_initialised_offsets_equal_plain_model():
    plain_cfg = micro_config()
    off_cfg = dataclasses.replace(plain_cfg, offsets=OffsetConfig(enabled=True))
    torch.manual_seed(0)
    plain = CausalOcc(plain_cfg)
    with_off = CausalOcc(off_cfg)
    missing = with_off.load_state_dict(plain.state_dict(), strict=False)
    assert all(k.startswith("offset_head.") for k in missing.missing_keys)
    inputs = camera_inputs(plain_cfg)
    for mode in ("eval", "train"):
        plain.train(mode == "train")
        with_off.train(mode == "train")
        a, b = plain(inputs), with_off(inputs)
        assert torch.equal(b.offsets.rotation, torch.zeros_like(b.offsets.rotation))
        delta = b.offsets.frustum_delta
        assert delta is not None and torch.equal(delta, torch.zeros_like(delta))
        assert torch.allclose(a.logits, b.logits, atol=1e-6), mode


def test_offsets_receive_gradients_with_soft_filling():
    cfg = dataclasses.replace(micro_config(), offsets=OffsetConfig(enabled=True))
    model = CausalOcc(cfg).train()
    out = model(camera_inputs(cfg))
    (out.logits.square().mean()).backward()
    head = model.offset_head
    assert head is not None
    last_global, last_local = head.global_mlp[-1], head.local[-1]
    assert last_global.weight.grad is not None and last_global.weight.grad.abs().sum() > 0
    assert last_local.weight.grad is not None and last_local.weight.grad.abs().sum() > 0


def test_missing_camera_features_are_zeroed():
    cfg = micro_config()
    model = CausalOcc(cfg).eval()
    inputs = camera_inputs(cfg)
    inputs.camera_valid[0, 1] = False
    out = model(inputs)
    inputs2 = camera_inputs(cfg)
    inputs2.camera_valid[0, 1] = False
    inputs2.images[0, 1] = torch.rand_like(inputs2.images[0, 1])  # content of a missing camera is ignored
    assert torch.allclose(out.logits, model(inputs2).logits)


def test_normalized_conv_kernels_stay_normalised_after_updates():
    block = NormalizedConv3d(4)
    opt = torch.optim.SGD(block.parameters(), lr=10.0)
    for _ in range(3):
        x = torch.randn(1, 4, 5, 5, 5)
        loss = (block(x) - torch.randn(1, 4, 5, 5, 5)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    k, m = block.spatial_kernel(), block.mix_weight()
    assert (k >= 0).all() and torch.allclose(k.flatten(1).sum(1), torch.ones(4))
    assert (m >= 0).all() and torch.allclose(m.flatten(1).sum(1), torch.ones(4))
    assert not torch.allclose(k, NormalizedConv3d(4).spatial_kernel())  # it did learn


def test_normalized_conv_starts_channel_preserving():
    block = NormalizedConv3d(32)
    k, m = block.spatial_kernel().flatten(1), block.mix_weight().flatten(1)
    assert torch.allclose(k[:, 13], torch.full((32,), 0.2)) and torch.allclose(k[:, 0], torch.full((32,), 0.8 / 26))
    assert torch.allclose(m.diagonal(), torch.full((32,), 0.9))
    # one-hot channel features keep 0.5 + 0.5 * 0.9 = 95 % of their mass in their own channel
    x = torch.zeros(1, 32, 3, 3, 3)
    x[:, 5] = 1.0
    y = block(x)[0, :, 1, 1, 1].detach()
    assert float(y[5]) == pytest.approx(0.95, abs=1e-5) and float(y.sum()) == pytest.approx(1.0, abs=1e-5)


def test_normalized_conv_preserves_constant_fields():
    block = NormalizedConv3d(3)
    x = torch.full((1, 3, 4, 4, 4), 2.5)
    assert torch.allclose(block(x)[..., 1:-1, 1:-1, 1:-1], x[..., 1:-1, 1:-1, 1:-1])


@pytest.mark.parametrize("name", ["baseline_tiny", "scaocc_tiny", "baseline_r50", "scaocc_r50"])
def test_shipped_configs_load(name):
    cfg = load_config(f"config/model/{name}.yaml")
    assert cfg.name == name
    assert model_config_from_dict(cfg.to_dict()) == cfg


def test_config_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("depth: {groups: 3, context_channels: 32}\n")
    with pytest.raises(ConfigError, match="divisible"):
        load_config(bad)
    bad.write_text("encoder: {depht: 18}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(bad)
    bad.write_text("grid: {size: [1, 2]}\n")
    with pytest.raises(ConfigError, match="expected 3 values"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_checkpoint_round_trip_and_corruption(tmp_path):
    cfg = micro_config()
    model = CausalOcc(cfg).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, cfg, meta={"step": 3})
    loaded, loaded_cfg = load_checkpoint(path)
    assert loaded_cfg == cfg
    inputs = camera_inputs(cfg)
    assert torch.equal(model(inputs).logits, loaded(inputs).logits)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(corrupt)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a scaocc checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize("fast_form", [depthwise3x3x3_channels_last, depthwise3x3x3_banded])
def test_depthwise_kernel_equals_conv3d_reference_with_gradients(fast_form):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.rand(3, 1, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    fast, ref = fast_form(x, k), depthwise3x3x3_reference(x, k)
    torch.testing.assert_close(fast, ref)
    # first order in the input and the kernel, then second order (a loss on the gradient)
    first = [torch.autograd.grad(y.sin().sum(), (x, k), retain_graph=True) for y in (fast, ref)]
    torch.testing.assert_close(*first)
    gf = torch.autograd.grad(fast.square().sum(), x, create_graph=True)[0]
    gr = torch.autograd.grad(ref.square().sum(), x, create_graph=True)[0]
    torch.testing.assert_close(gf, gr)
    torch.testing.assert_close(torch.autograd.grad(gf.sin().sum(), (x, k)), torch.autograd.grad(gr.sin().sum(), (x, k)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("live", [1.0, 0.05])
def test_numba_kernel_gradient_equals_the_correlation(dtype: torch.dtype, live: float) -> None:
    """The depthwise kernel's gradient from the numba pass (which skips voxels where the output
    gradient is zero) equals the differentiable correlation, for a dense output gradient and for
    one that is zero at 95 % of the voxels (as the causal loss' is), with voxels on every face."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 7, 6, 4, generator=g, dtype=dtype).contiguous(memory_format=torch.channels_last_3d)
    grad = torch.randn(2, 5, 7, 6, 4, generator=g, dtype=dtype)
    grad = grad * (torch.rand(2, 1, 7, 6, 4, generator=g) < live).to(dtype)
    grad[:, :, 0, 0, 0] = 1.0  # a corner voxel, where most of the 27 taps fall outside
    ref = kernel_gradient_reference(x, grad)
    assert ref.shape == (5, 1, 3, 3, 3) and ref.abs().sum() > 0
    torch.testing.assert_close(kernel_gradient(x, grad).to(dtype), ref)


def test_depthwise3x3x3_takes_the_channels_last_form_on_cpu_and_the_banded_one_in_export():
    x = torch.randn(1, 2, 4, 4, 3)
    k = torch.rand(2, 1, 3, 3, 3)
    assert depthwise3x3x3(x, k).is_contiguous(memory_format=torch.channels_last_3d)
    exported = torch.export.export(_Depthwise(k), (x,))
    ops = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert any("conv2d" in op for op in ops) and not any("conv3d" in op for op in ops), ops


class _Depthwise(nn.Module):
    def __init__(self, kernel: torch.Tensor) -> None:
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise3x3x3(x, self.kernel)


def test_upsampling_head_predicts_the_output_grid():
    base = micro_config()
    cfg = dataclasses.replace(base, voxel=dataclasses.replace(base.voxel, upsample=2)).validate()
    assert cfg.feature_grid.size == tuple(n // 2 for n in cfg.grid.size)
    out = CausalOcc(cfg).eval()(camera_inputs(cfg))
    assert out.logits.shape[-3:] == cfg.grid.size
    assert out.feat3d.shape[-3:] == cfg.feature_grid.size
    with pytest.raises(ConfigError, match="divisible"):
        dataclasses.replace(cfg, grid=dataclasses.replace(cfg.grid, size=(17, 16, 4))).validate()


def test_sub_voxel_head_layout_and_loss_on_it():
    """Output voxel (f X' + i, f Y' + j, f Z' + m) reads MLP output ``k f^3 + i f^2 + j f + m`` of its
    feature voxel (the layout the shipped checkpoints were trained with), stored channels-last;
    the loss is the same on a contiguous copy of the logits."""
    torch.manual_seed(0)
    head, f, K = SubVoxelHead(4, NUM_CLASSES, 2), 2, NUM_CLASSES
    x = torch.randn(1, 4, 3, 2, 2)  # b Cin X' Y' Z'
    out = head(x)  # b K X Y Z
    raw = head.mlp(x.permute(0, 2, 3, 4, 1))  # b X' Y' Z' (K f f f)
    assert out.shape == (1, K, 6, 4, 4) and out.is_contiguous(memory_format=torch.channels_last_3d)
    for k, i, j, m, X, Y, Z in [(0, 0, 0, 0, 0, 0, 0), (5, 1, 0, 1, 2, 1, 0), (17, 1, 1, 1, 1, 0, 1)]:
        assert out[0, k, f * X + i, f * Y + j, f * Z + m] == raw[0, X, Y, Z, k * f**3 + i * f * f + j * f + m]
    cfg = micro_config()
    model_out = CausalOcc(cfg).eval()(camera_inputs(cfg))
    sem = torch.randint(0, K, (1, *cfg.grid.size))
    targets = Targets(sem, torch.rand(sem.shape) > 0.3, None, None, None)
    loss = OccupancyLoss(cfg.loss, cfg.depth)
    last = dataclasses.replace(model_out, logits=model_out.logits.contiguous(memory_format=torch.channels_last_3d))
    first = dataclasses.replace(model_out, logits=model_out.logits.contiguous())
    g = [torch.Generator().manual_seed(1) for _ in range(2)]
    torch.testing.assert_close(loss(last, targets, g[0])[0], loss(first, targets, g[1])[0])



def test_sub_voxel_head_neighbourhood_kernel():
    """A 3^3 first layer reads the neighbours: with only its centre tap it equals the pointwise
    head; a feature change one voxel away moves this voxel's logits only with the kernel."""
    torch.manual_seed(0)
    point, wide = SubVoxelHead(4, NUM_CLASSES, 2), SubVoxelHead(4, NUM_CLASSES, 2, kernel=3)
    wide.mlp[2].load_state_dict(point.mlp[2].state_dict())
    with torch.no_grad():
        wide.mlp[0].weight.zero_()
        wide.mlp[0].weight[:, :, 1, 1, 1] = point.mlp[0].weight
        wide.mlp[0].bias.copy_(point.mlp[0].bias)
    x = torch.randn(1, 4, 3, 3, 2)  # b Cin X' Y' Z'
    torch.testing.assert_close(wide(x), point(x))
    torch.nn.init.normal_(wide.mlp[0].weight)
    y = x.clone()
    y[0, :, 2, 1, 1] += 1.0  # the neighbour of feature voxel (1, 1, 1) along x
    centre = (slice(None), slice(None), slice(2, 4), slice(2, 4), slice(2, 4))  # its children
    assert torch.equal(point(x)[centre], point(y)[centre])
    assert not torch.allclose(wide(x)[centre], wide(y)[centre])
    with pytest.raises(ConfigError, match="head_kernel"):
        VoxelNetConfig(upsample=2, head_kernel=5).validate()

def test_depth_loss_sums_bins_and_averages_cells():
    """Uniform depth over D bins: -log(1/D) - (D-1) log(1 - 1/D) per supervised cell (by hand)."""
    cfg = DepthConfig(d_min=1.0, d_max=5.0, d_step=1.0)  # D = 4
    D = cfg.num_bins
    depth = torch.full((1, 2, 1, D, 2, 2), 1.0 / D)  # b n G D h w
    depth2d = torch.zeros(1, 2, 4, 4)  # b n H W: one 2x2 pixel block per cell
    depth2d[0, 0, :2, :2] = 2.5  # bin 1
    depth2d[0, 1, 2:, 2:] = 4.2  # bin 3; every other cell is unsupervised (no depth)
    expected = -math.log(1 / D) - (D - 1) * math.log(1 - 1 / D)
    assert float(depth_loss(depth, depth2d, cfg)) == pytest.approx(expected, rel=1e-5)
    sharp = torch.zeros_like(depth)
    sharp[0, 0, 0, 1, 0, 0] = sharp[0, 1, 0, 3, 1, 1] = 1.0
    sharp[0, :, 0, 0] += torch.where(sharp[0, :, 0].sum(1) == 0, 1.0, 0.0)  # elsewhere: bin 0
    assert float(depth_loss(sharp, depth2d, cfg)) < 1e-4


def test_normalized_propagation_transpose_is_its_adjoint():
    """``<L x, y> = <x, L^T y>`` for the (linear) normalised stack, and ``L^T y`` is the
    vector-Jacobian product autograd computes; the residual stack has no transpose."""
    g = torch.Generator().manual_seed(2)
    cfg = micro_config().voxel
    prop = Propagation(3, dataclasses.replace(cfg, propagation_blocks=2)).double()
    with torch.no_grad():
        for p in prop.parameters():
            p.normal_(generator=g)
    x = torch.randn(2, 3, 5, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 3, 5, 4, 6, generator=g, dtype=torch.float64)
    transpose = prop.transpose()
    assert transpose is not None
    lhs, rhs = (prop(x) * y).sum().detach(), (x * transpose(y)).sum().detach()
    assert abs(float(lhs)) > 1e-3 and torch.isclose(lhs, rhs, rtol=1e-12)
    (vjp,) = torch.autograd.grad(prop(x), x, grad_outputs=y)
    torch.testing.assert_close(transpose(y), vjp, rtol=1e-12, atol=1e-12)
    one = y[:, :1]  # one channel stands for the same values in all of them
    torch.testing.assert_close(transpose(one), transpose(one.expand_as(y).contiguous()), rtol=1e-12, atol=1e-12)
    assert Propagation(3, dataclasses.replace(cfg, propagation="residual")).transpose() is None


def test_normalized_block_equals_its_conv3d_form_to_second_order():
    """The block's depthwise step as a banded 2D convolution and its channel mix as a matrix
    product, in Z-major memory, against the plain ``conv3d`` formulation."""
    g = torch.Generator().manual_seed(1)
    block = NormalizedConv3d(3).double()
    with torch.no_grad():
        block.spatial_logits.normal_(generator=g)
        block.mix_logits.normal_(generator=g)
    x = torch.randn(2, 3, 5, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)

    def reference(x: torch.Tensor) -> torch.Tensor:
        y = depthwise3x3x3_reference(x, block.spatial_kernel())
        return 0.5 * (x + F.conv3d(y, block.mix_weight()[..., None, None, None]))

    params = (x, block.spatial_logits, block.mix_logits)
    for fn in (block, lambda t: block(channels_last(t))):
        fast, ref = fn(x), reference(x)
        torch.testing.assert_close(fast, ref)
        gf = torch.autograd.grad(fast.square().sum(), x, create_graph=True)[0]
        gr = torch.autograd.grad(ref.square().sum(), x, create_graph=True)[0]
        torch.testing.assert_close(gf, gr)
        torch.testing.assert_close(torch.autograd.grad(gf.sin().sum(), params),
                                   torch.autograd.grad(gr.sin().sum(), params))
