"""The causal loss: second-order gradcheck, sampled vs exact estimator, and learning."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.func import functional_call

from scaocc_core.batch import CameraInputs, Targets
from scaocc_core.causal import (
    Tap,
    causal_loss,
    causal_loss_exact,
    causal_loss_for_class,
    causal_tap,
    class_targets,
    present_classes,
)
from scaocc_core.config import ConfigError, LiftConfig, LossConfig
from scaocc_core.grid import FREE, IGNORE
from scaocc_core.losses import OccupancyLoss, lovasz_softmax, lovasz_softmax_reference
from scaocc_core.model import splat as splat_module
from scaocc_core.model.causal_occ import CausalOcc, ModelOutput

from .fixtures import camera_inputs, micro_config


def _toy_targets(cfg, batch: int = 1):
    """Left half of every image shows class 4 at 3-4 m, right half class 15 at 6-7 m."""
    X, Y, Z = cfg.grid.size
    sem = torch.full((batch, X, Y, Z), FREE, dtype=torch.long)
    vx = cfg.grid.voxel_size[0]
    x3, x6 = int((3 - cfg.grid.lower[0]) / vx), int((6 - cfg.grid.lower[0]) / vx)
    sem[:, x3, Y // 2 :, :] = 4  # y > 0 is the camera's left
    sem[:, x6, : Y // 2, :] = 15
    n, H, W = cfg.image.num_cams, cfg.image.height, cfg.image.width
    sem2d = torch.full((batch, n, H, W), IGNORE, dtype=torch.long)
    sem2d[:, 0, :, : W // 2] = 4
    sem2d[:, 0, :, W // 2 :] = 15
    return sem, sem2d


def _loss_and_grads(model: CausalOcc, inputs, loss_of) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward and backward of ``loss_of(model output)``: the loss and every parameter's gradient."""
    model.zero_grad()
    loss = loss_of(model(inputs))
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


def _assert_same_loss_and_grads(fast: tuple[torch.Tensor, dict[str, torch.Tensor]],
                                ref: tuple[torch.Tensor, dict[str, torch.Tensor]]) -> None:
    """The two computations give the same (non-zero) loss and the same gradient for every parameter."""
    (loss_f, grads_f), (loss_r, grads_r) = fast, ref
    assert float(loss_r) > 0 and torch.allclose(loss_f, loss_r, rtol=1e-10)
    assert grads_f.keys() == grads_r.keys()
    for name, r in grads_r.items():
        assert torch.allclose(grads_f[name], r, rtol=1e-8, atol=1e-12), name


def _full_method() -> tuple[CausalOcc, CameraInputs, torch.Tensor, torch.Tensor]:
    """The full method in float64 (offsets, soft filling, camera-aware depth, two normalised
    propagation blocks), its offsets and propagation moved away from their identity-like
    initialisation; with its camera inputs and the toy targets."""
    base = micro_config()
    cfg = micro_config(offsets=dataclasses.replace(base.offsets, enabled=True), lift=LiftConfig("soft"),
                       depth=dataclasses.replace(base.depth, camera_aware=True),
                       voxel=dataclasses.replace(base.voxel, propagation_blocks=2))
    torch.manual_seed(0)
    model = CausalOcc(cfg).to(torch.float64).train()
    with torch.no_grad():
        for block in model.propagation.blocks:
            block.spatial_logits.normal_()
            block.mix_logits.normal_()
        for last in (model.offset_head.global_mlp[-1], model.offset_head.local[-1]):
            last.weight.normal_(std=0.1)
    return model, camera_inputs(cfg, dtype=torch.float64), *_toy_targets(cfg)


def _model(dtype=torch.float32):
    cfg = micro_config(image=dataclasses.replace(micro_config().image, num_cams=1), lift=LiftConfig("soft"))
    torch.manual_seed(0)
    return CausalOcc(cfg).to(dtype).eval(), cfg


def test_class_targets_soft_and_sparse():
    sem2d = torch.full((1, 1, 4, 4), IGNORE)
    sem2d[0, 0, 0, 0] = 4
    sem2d[0, 0, 0, 1] = 1
    target, valid = class_targets(sem2d, 4, (2, 2))
    assert valid[0, 0].tolist() == [[True, False], [False, False]]
    assert torch.isclose(target[0, 0, 0, 0], torch.tensor(0.5))


def test_gradcheck_second_order_double_precision():
    model, cfg = _model(torch.float64)
    inputs = camera_inputs(cfg, dtype=torch.float64)
    sem, sem2d = _toy_targets(cfg)
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    def loss_of(bias: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**params, **buffers, "depth_head.out.bias": bias}, (inputs,))
        return causal_loss_for_class(out.feat3d, out.feat2d, sem, sem2d, 4)

    bias = params["depth_head.out.bias"].detach().clone().requires_grad_()
    assert float(loss_of(bias).detach()) > 0
    assert torch.autograd.gradcheck(loss_of, (bias,), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_sampled_estimator_is_unbiased_for_the_exact_mean():
    model, cfg = _model()
    inputs = camera_inputs(cfg)
    sem, sem2d = _toy_targets(cfg)
    out = model(inputs)
    classes = present_classes(sem, None)
    assert classes == [4, 15]
    per_class = {c: float(causal_loss_for_class(out.feat3d, out.feat2d, sem, sem2d, c).detach()) for c in classes}
    exact = float(causal_loss_exact(out.feat3d, out.feat2d, sem, sem2d).detach())
    assert abs(exact - sum(per_class.values()) / len(classes)) < 1e-6
    g = torch.Generator().manual_seed(0)
    draws = [causal_loss(out.feat3d, out.feat2d, sem, sem2d, None, g) for _ in range(400)]
    picked = [c for _, c in draws]
    assert abs(picked.count(4) / len(picked) - 0.5) < 0.1  # uniform over present classes
    for loss, c in draws[:5]:
        assert abs(float(loss.detach()) - per_class[c]) < 1e-5
    mean = sum(float(v.detach()) for v, _ in draws) / len(draws)
    spread = abs(per_class[4] - per_class[15])
    assert abs(mean - exact) < 4 * spread / (2 * len(draws) ** 0.5) + 1e-6


def test_training_only_the_depth_head_reduces_the_causal_loss():
    model, cfg = _model()
    inputs = camera_inputs(cfg)
    sem, sem2d = _toy_targets(cfg)
    head = list(model.depth_head.parameters())  # the only parameters the optimiser updates
    opt = torch.optim.Adam(head, lr=3e-2)
    losses = []
    for _ in range(40):
        out = model(inputs)
        loss = causal_loss_exact(out.feat3d, out.feat2d, sem, sem2d)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0], losses


def test_causal_warmup_ramps_the_weight_from_zero_over_its_fraction_of_training():
    model, cfg = _model()
    out = model(camera_inputs(cfg))
    sem, sem2d = _toy_targets(cfg)
    loss_cfg = LossConfig(causal_weight=0.5, causal_warmup=0.4)
    loss = OccupancyLoss(loss_cfg, cfg.depth)
    targets = Targets(semantics=sem, sem2d=sem2d)

    def causal_at(progress: float) -> float | None:
        return loss(out, targets, torch.Generator().manual_seed(0), progress)[1].get("causal")

    assert causal_at(0.0) is None  # not computed at all while its weight is 0
    full = causal_at(1.0)
    assert full is not None and full > 0
    assert causal_at(0.2) == pytest.approx(0.5 * full, rel=1e-5)
    assert causal_at(0.4) == pytest.approx(full, rel=1e-5)
    assert causal_at(0.9) == pytest.approx(full, rel=1e-5)
    assert [LossConfig(causal_warmup=0.0).causal_scale(p) for p in (0.0, 0.5)] == [1.0, 1.0]
    with pytest.raises(ConfigError, match="causal_warmup"):
        LossConfig(causal_warmup=1.5).validate()


def test_lazy_causal_loss_runs_every_kth_step_at_k_times_the_weight():
    model, cfg = _model()
    out = model(camera_inputs(cfg))
    sem, sem2d = _toy_targets(cfg)
    targets = Targets(semantics=sem, sem2d=sem2d)
    exact = OccupancyLoss(LossConfig(causal_weight=0.5), cfg.depth)
    lazy = OccupancyLoss(LossConfig(causal_weight=0.5, causal_every=3), cfg.depth)

    def causal(loss: OccupancyLoss, step: int | None) -> float | None:
        return loss(out, targets, torch.Generator().manual_seed(0), 1.0, step)[1].get("causal")

    full = causal(exact, 4)
    assert full is not None and full > 0
    assert [causal(lazy, s) for s in (1, 2, 4, 5)] == [None] * 4  # skipped: not computed at all
    assert causal(lazy, 0) == pytest.approx(3 * full, rel=1e-5)
    assert causal(lazy, 6) == pytest.approx(3 * full, rel=1e-5)
    # Over any k consecutive training steps the weights sum to k: the expected gradient is unchanged.
    assert sum(lazy.cfg.causal_scale(1.0, s) for s in range(7, 10)) == 3
    assert causal(lazy, None) == pytest.approx(full, rel=1e-5)  # evaluation: every time, unscaled
    with pytest.raises(ConfigError, match="causal_every"):
        LossConfig(causal_every=0).validate()


def test_training_steps_hand_their_step_to_the_lazy_causal_loss():
    from scaocc_core.batch import Batch
    from scaocc_core.training.config import TrainConfig
    from scaocc_core.training.engine import RunState, TrainStep, _optimise

    model, cfg = _model()
    model.train()
    sem, sem2d = _toy_targets(cfg)
    batch = Batch(camera_inputs(cfg), Targets(semantics=sem, sem2d=sem2d))
    runner = TrainStep(model, OccupancyLoss(LossConfig(causal_weight=0.5, causal_every=2), cfg.depth), None)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = RunState(opt, torch.amp.GradScaler("cuda", enabled=False), scheduler)
    steps = [_optimise(runner, list(model.parameters()), state, batch, torch.Generator().manual_seed(0),
                       TrainConfig(steps=4))[0] for _ in range(4)]
    assert ["causal" in parts for parts in steps] == [True, False, True, False]
    assert state.step == 4


def test_vectorised_lovasz_equals_the_per_class_loop():
    g = torch.Generator().manual_seed(3)
    probs = torch.rand(500, 18, generator=g, dtype=torch.float64).softmax(-1).requires_grad_(True)
    labels = torch.randint(0, 18, (500,), generator=g)
    labels[labels == 7] = 3  # an absent class
    fast, ref = lovasz_softmax(probs, labels), lovasz_softmax_reference(probs, labels)
    torch.testing.assert_close(fast, ref)
    torch.testing.assert_close(torch.autograd.grad(fast, probs)[0], torch.autograd.grad(ref, probs)[0])


def test_causal_loss_and_its_gradients_equal_with_the_soft_filling_kernel_and_its_reference(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The full method (offsets, soft filling, causal loss through the propagated features):
    the numba kernel changes neither the loss nor any parameter's gradient."""
    cfg = micro_config(offsets=dataclasses.replace(micro_config().offsets, enabled=True), lift=LiftConfig("soft"))
    torch.manual_seed(0)
    model = CausalOcc(cfg).to(torch.float64).train()
    inputs = camera_inputs(cfg, dtype=torch.float64)
    sem, sem2d = _toy_targets(cfg)

    def loss_of(out: ModelOutput) -> torch.Tensor:
        return causal_loss_exact(out.feat3d, out.feat2d, sem, sem2d) + out.logits.square().mean()

    monkeypatch.setattr(splat_module, "use_kernel", lambda values: True)
    kernel = _loss_and_grads(model, inputs, loss_of)
    monkeypatch.setattr(splat_module, "use_kernel", lambda values: False)
    reference = _loss_and_grads(model, inputs, loss_of)
    assert reference[1]["offset_head.local.2.weight"].abs().sum() > 0
    _assert_same_loss_and_grads(kernel, reference)


def test_causal_loss_and_its_gradients_equal_through_the_propagation_transpose():
    """The score's gradient carried back through the linear normalised propagation as
    ``L^T share`` (a :class:`Tap`) gives the loss and every parameter gradient that autograd's
    double backward through the propagation gives (float64, the full method, two blocks)."""
    model, inputs, sem, sem2d = _full_method()
    through_transpose = _loss_and_grads(model, inputs, lambda out: causal_loss_exact(
        Tap(out.feat3d, out.feat3d_splat, out.propagation_t), out.feat2d, sem, sem2d))
    autograd = _loss_and_grads(model, inputs, lambda out: causal_loss_exact(out.feat3d, out.feat2d, sem, sem2d))
    assert autograd[1]["propagation.blocks.0.mix_logits"].abs().sum() > 0
    assert autograd[1]["propagation.blocks.1.spatial_logits"].abs().sum() > 0
    _assert_same_loss_and_grads(through_transpose, autograd)


@pytest.mark.parametrize("feature", ["propagated", "splat"])
def test_causal_loss_and_its_gradients_equal_through_the_image_feature_taps(feature: str) -> None:
    """The attention taken as one-channel transposed convolutions of the gradients at the first
    layers of the image features' consumers (depth head behind its camera gate, the offsets'
    local convolution and pooled features) gives the loss and every parameter gradient that the
    gradient with respect to the image features gives (float64, the full method)."""
    model, inputs, sem, sem2d = _full_method()

    def loss_of(out: ModelOutput, through_taps: bool) -> torch.Tensor:
        assert len(out.feat2d_taps) == 3
        tap = causal_tap(out, feature)
        return causal_loss_exact(tap if through_taps else dataclasses.replace(tap, heads=()), out.feat2d, sem, sem2d)

    through_taps = _loss_and_grads(model, inputs, lambda out: loss_of(out, True))
    autograd = _loss_and_grads(model, inputs, lambda out: loss_of(out, False))
    for name in ("depth_head.trunk.0.weight", "depth_head.camera_mlp.0.weight", "offset_head.local.0.weight",
                 "offset_head.global_mlp.0.weight", "encoder.backbone.conv1.weight"):
        assert autograd[1][name].abs().sum() > 0, name
    _assert_same_loss_and_grads(through_taps, autograd)


@pytest.mark.parametrize("feature", ["propagated", "splat"])
def test_causal_loss_as_trained_equals_the_double_backward_of_the_reference(
        feature: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The causal loss as training computes it (:func:`causal_tap`: the kernel's VJP that skips
    the zero voxels of its input, the propagation's transpose, the image-feature taps) gives the
    loss and every parameter gradient that autograd's double backward through the PyTorch
    reference of the splat and through the propagation gives (float64, the full method, two
    propagation blocks away from their initialisation); so does :func:`causal_tap` where the
    kernel does not run (a GPU), with the transpose and the taps but no VJP."""
    model, inputs, sem, sem2d = _full_method()
    monkeypatch.setattr(splat_module, "use_kernel", lambda values: True)
    as_trained = _loss_and_grads(model, inputs, lambda out: causal_loss_exact(
        causal_tap(out, feature), out.feat2d, sem, sem2d))
    monkeypatch.setattr(splat_module, "use_kernel", lambda values: False)
    without_kernel = _loss_and_grads(model, inputs, lambda out: causal_loss_exact(
        causal_tap(out, feature), out.feat2d, sem, sem2d))  # as on a GPU: no kernel, no VJP
    reference = _loss_and_grads(model, inputs, lambda out: causal_loss_exact(
        out.feat3d if feature == "propagated" else out.feat3d_splat, out.feat2d, sem, sem2d))
    for name in ("propagation.blocks.0.mix_logits", "propagation.blocks.1.spatial_logits",
                 "offset_head.local.0.weight", "depth_head.trunk.0.weight"):
        assert feature == "splat" and name.startswith("propagation") or reference[1][name].abs().sum() > 0, name
    _assert_same_loss_and_grads(as_trained, reference)
    _assert_same_loss_and_grads(without_kernel, reference)
