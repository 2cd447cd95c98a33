"""The one ``Predictor``: camera images in, :class:`Prediction` out, on any inference engine.

``Predictor(engine, meta)`` owns what is the same for every backend: validating the
inputs, the dataset's test-time resize and crop of arbitrary camera images to the network
size (with the augmentation matrices updated), and unpacking the outputs. The engine
(:mod:`scaocc_core.deploy.backends`: torch, onnxruntime, tensorrt) only runs the graph;
``meta`` (:class:`~scaocc_core.deploy.onnx_model.ExportMetadata`) says which model it is.
:func:`make_predictor` is the one factory. For Python users::

    predictor = Predictor.from_checkpoint("best.pt")  # or make_predictor(path, "cuda", "tensorrt")
    pred = predictor.predict(PredictorInput(images, intrinsics, ego_T_cam, camera_valid))
    pred.labels  # X Y Z uint8, 17 = free
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scaocc_core.config import GridConfig, ModelConfig
from scaocc_core.data.augment import eval_image_aug, image_aug_matrix, network_camera, warp_image
from scaocc_core.deploy.backends import Engine, TorchEngine, labels_from_logits, load_engine
from scaocc_core.deploy.onnx_model import ExportMetadata
from scaocc_core.model.causal_occ import CausalOcc

log = logging.getLogger(__name__)


class PredictorError(ValueError):
    """The predictor was given inputs it cannot use (wrong count, bad calibration...)."""


#: Scale denominators a JPEG decoder can apply while decoding (libjpeg DCT scaling).
DECODE_REDUCTIONS: tuple[int, ...] = (1, 2, 4, 8)


def decode_reduction(src_hw: tuple[int, int], model_hw: tuple[int, int]) -> int:
    """The largest ``s`` of :data:`DECODE_REDUCTIONS` at which an image may be decoded.

    ``preprocess`` resizes a ``src_hw`` image by ``resize`` (from
    :func:`~scaocc_core.data.augment.eval_image_aug`) before cropping to ``model_hw``.
    Decoding at ``1/s`` first (``ceil(H/s) x ceil(W/s)`` pixels, e.g. OpenCV's
    ``IMREAD_REDUCED_COLOR_s``) loses nothing as long as ``s * resize <= 1``: the test-time
    resize then still shrinks (or keeps) the reduced image and never upsamples it. The
    intrinsics of the reduced image are those of ``src_hw`` scaled by ``1/s`` with the
    pixel-centre convention ``u' = (u + 0.5) / s - 0.5``. Returns 1 when the model needs
    the full resolution (or more).
    """
    if min(src_hw) <= 0 or min(model_hw) <= 0:
        raise PredictorError(f"image sizes must be positive, got source {src_hw} and model {model_hw}")
    resize = eval_image_aug(src_hw, model_hw).resize
    return max(s for s in DECODE_REDUCTIONS if s * resize <= 1.0 or s == 1)


@dataclass
class PredictorInput:
    """One synchronised camera set, as the node or a dataset provides it."""

    images: list[np.ndarray]  # n of H_i W_i 3 uint8 RGB, any resolution
    intrinsics: np.ndarray  # n 3 3, K of those images
    ego_T_cam: np.ndarray  # n 4 4
    camera_valid: np.ndarray  # n bool


@dataclass
class Prediction:
    """Per-voxel labels and confidence, plus the learnt camera corrections."""

    labels: np.ndarray  # X Y Z uint8 (17 = free)
    confidence: np.ndarray  # X Y Z uint8 (max softmax probability x 255)
    rotation_offsets: np.ndarray  # n 3 axis-angle, radians
    translation_offsets: np.ndarray  # n 3 metres
    timings_ms: dict[str, float] = field(default_factory=dict)


class Predictor:
    """An engine and its model's metadata in, :class:`Prediction` out; see the module docstring."""

    def __init__(self, engine: Engine, meta: ExportMetadata) -> None:
        self.engine = engine
        self.meta = meta
        self.cfg: ModelConfig = meta.config
        self.grid: GridConfig = meta.grid
        self.class_names: tuple[str, ...] = meta.class_names
        self.num_cams = meta.config.image.num_cams
        self.image_hw = (meta.config.image.height, meta.config.image.width)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", backend: str = "torch") -> Predictor:
        """The model of a checkpoint (its config travels inside) or of an ONNX export; see :func:`make_predictor`."""
        return make_predictor(path, device, backend)

    @classmethod
    def from_model(cls, model: CausalOcc, cfg: ModelConfig, device: str = "cpu") -> Predictor:
        """A model already in memory on the torch engine."""
        return cls(TorchEngine(model, device), ExportMetadata(cfg, "labels", "fp32"))

    @classmethod
    def from_config(cls, cfg: ModelConfig, device: str = "cpu", seed: int = 0) -> Predictor:
        """A randomly initialised model (demos, tests and benchmarks)."""
        torch.manual_seed(seed)
        return cls.from_model(CausalOcc(cfg), cfg, device)

    def decode_reduction(self, src_hw: tuple[int, int]) -> int:
        """:func:`decode_reduction` of ``src_hw`` images for this model's input size."""
        return decode_reduction(src_hw, self.image_hw)

    def preprocess(self, inp: PredictorInput) -> dict[str, np.ndarray]:
        """Validate, resize and crop; returns the graph inputs (batch 1, float32), the intrinsics
        at network scale (:func:`~scaocc_core.data.augment.network_camera`)."""
        n = self.num_cams
        if len(inp.images) != n:
            raise PredictorError(f"expected {n} images, got {len(inp.images)}")
        K = np.asarray(inp.intrinsics, dtype=np.float64)
        T = np.asarray(inp.ego_T_cam, dtype=np.float64)
        if K.shape != (n, 3, 3) or T.shape != (n, 4, 4):
            raise PredictorError(f"intrinsics must be {n}x3x3 and ego_T_cam {n}x4x4")
        if not (np.isfinite(K).all() and np.isfinite(T).all()):
            raise PredictorError("non-finite calibration")
        if np.any(np.abs(np.linalg.det(K)) < 1e-9):
            raise PredictorError("singular intrinsics")
        images = np.zeros((n, 3, *self.image_hw), dtype=np.float32)
        K_net = np.zeros((n, 3, 3), dtype=np.float32)
        post_rot = np.zeros((n, 3, 3), dtype=np.float32)
        post_tran = np.zeros((n, 3), dtype=np.float32)
        for i, img in enumerate(inp.images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise PredictorError(f"image {i}: expected H W 3 uint8, got {img.shape} {img.dtype}")
            aug = eval_image_aug(img.shape[:2], self.image_hw)  # the dataset's test-time resize + crop
            images[i] = warp_image(img, self.image_hw, aug).transpose(2, 0, 1).astype(np.float32) / 255.0
            A = image_aug_matrix(img.shape[:2], self.image_hw, aug)
            K_net[i], post_rot[i], post_tran[i] = network_camera(K[i], img.shape[:2], self.image_hw, A)
        return {
            "images": images[None],
            "intrinsics": K_net[None],
            "ego_T_cam": T.astype(np.float32)[None],
            "post_rot": post_rot[None],
            "post_tran": post_tran[None],
            "camera_valid": np.asarray(inp.camera_valid, dtype=np.float32).reshape(1, n),
        }

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """Run the engine on preprocessed inputs: labels, confidence, rotation and translation offsets."""
        out = self.engine(feeds)
        if self.meta.outputs == "logits":
            return (*labels_from_logits(out[0]), *out[1:])
        return out

    def warm_up(self) -> Prediction:
        """One prediction on black images at the model's size (allocations, kernel selection,
        lazy initialisation), so that the first real camera set is not the slow one."""
        n, (h, w) = self.num_cams, self.image_hw
        K = np.array([[w, 0.0, (w - 1) / 2], [0.0, w, (h - 1) / 2], [0.0, 0.0, 1.0]])
        return self.predict(PredictorInput([np.zeros((h, w, 3), np.uint8)] * n, np.stack([K] * n),
                                           np.stack([np.eye(4)] * n), np.ones(n, dtype=bool)))

    def predict(self, inp: PredictorInput) -> Prediction:
        """Preprocess, run and unpack one camera set."""
        t0 = time.perf_counter()
        feeds = self.preprocess(inp)
        t1 = time.perf_counter()
        labels, conf, rot, trans = self.run(feeds)
        t2 = time.perf_counter()
        return Prediction(
            labels=labels[0], confidence=conf[0], rotation_offsets=rot[0].astype(np.float64),
            translation_offsets=trans[0].astype(np.float64),
            timings_ms={"preprocess": 1e3 * (t1 - t0), "inference": 1e3 * (t2 - t1)},
        )


def make_predictor(path: str | Path, device: str = "cpu", backend: str = "torch", precision: str = "fp32",
                   compile: bool = False, cuda_graph: bool = False, threads: int | None = None,
                   fused_pool: bool = True) -> Predictor:
    """A :class:`Predictor` for a ``.pt`` checkpoint or an ``.onnx`` export on ``backend``.

    ``precision`` (fp32/fp16/bf16), ``compile``, ``cuda_graph`` and ``fused_pool`` apply to
    ``torch``; ``precision`` fp16 also picks the float16 export when a checkpoint is given to
    an ONNX backend; ``threads`` sets ONNX Runtime's intra-op threads. Raises
    :class:`~scaocc_core.deploy.backends.EngineError` for unusable files or options and
    :class:`~scaocc_core.deploy.backends.BackendUnavailable` when the backend cannot run here.
    """
    engine, meta = load_engine(path, device, backend, precision, compile, cuda_graph, threads, fused_pool)
    log.info("%s predictor: %s (%s, %s) on %s", backend, path, meta.config.name, meta.precision, device)
    return Predictor(engine, meta)
