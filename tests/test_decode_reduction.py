"""``decode_reduction``: the largest 1/2^k JPEG decode scale that the test-time resize still covers."""

from __future__ import annotations

import math

import pytest

from scaocc_core.data.augment import eval_image_aug
from scaocc_core.predictor import DECODE_REDUCTIONS, PredictorError, decode_reduction


@pytest.mark.parametrize(
    ("src_hw", "model_hw", "expected"),
    [
        ((900, 1600), (128, 352), 4),  # tiny: resize 0.22, 1/4 -> 225x400 still >= 198x352
        ((900, 1600), (256, 704), 2),  # r50: resize 0.44, 1/2 -> 450x800 >= 396x704
        ((360, 640), (256, 704), 1),  # the model upsamples already
        ((900, 1600), (900, 1600), 1),
        ((1800, 3200), (128, 352), 8),
        ((3600, 6400), (128, 352), 8),  # 1/8 is the smallest scale a JPEG decoder offers
    ],
)
def test_hand_examples(src_hw: tuple[int, int], model_hw: tuple[int, int], expected: int) -> None:
    assert decode_reduction(src_hw, model_hw) == expected


@pytest.mark.parametrize("src_hw", [(900, 1600), (1080, 1920), (720, 1280), (481, 641), (1200, 1920), (97, 353)])
@pytest.mark.parametrize("model_hw", [(128, 352), (256, 704), (64, 176)])
def test_never_upsamples_and_is_the_largest(src_hw: tuple[int, int], model_hw: tuple[int, int]) -> None:
    s = decode_reduction(src_hw, model_hw)
    resize = eval_image_aug(src_hw, model_hw).resize
    reduced_hw = (math.ceil(src_hw[0] / s), math.ceil(src_hw[1] / s))
    resized_hw = (int(src_hw[0] * resize), int(src_hw[1] * resize))  # what the full-size path resizes to
    if s > 1:
        assert reduced_hw[0] >= resized_hw[0] and reduced_hw[1] >= resized_hw[1]
        assert reduced_hw[0] >= model_hw[0] and reduced_hw[1] >= model_hw[1]
        assert eval_image_aug(reduced_hw, model_hw).resize <= 1.0 + 1e-9  # the reduced image is never upsampled
    bigger = [r for r in DECODE_REDUCTIONS if r > s]
    if bigger:
        assert bigger[0] * resize > 1.0  # the next scale would need upsampling


def test_bad_sizes_raise() -> None:
    with pytest.raises(PredictorError, match="positive"):
        decode_reduction((0, 1600), (128, 352))
