"""occ_node's ROS parameters: declared with descriptors, read, and changed at runtime.

Every field of :class:`~scaocc_ros.params.NodeParams` becomes a parameter whose descriptor
carries its help text, its choices (``additional_constraints``), its range
(:data:`~scaocc_ros.params.RANGES`, enforced by rclpy) and ``read_only`` unless it is in
:data:`~scaocc_ros.params.RUNTIME` (thresholds, slop, timeouts, class sets, output switches).
rclpy refuses a read-only or out-of-range value with its own reason; :func:`changed` refuses
anything else :meth:`NodeParams.validate` would, with the validation message as the reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from scaocc_ros.params import EXTRINSIC_KEYS, RANGES, RUNTIME, NodeParams, with_extrinsics

_FIELDS = {f.name: f for f in dataclasses.fields(NodeParams) if not f.metadata.get("dynamic")}


def descriptor(name: str) -> ParameterDescriptor:
    """The descriptor of parameter ``name`` (a :class:`NodeParams` field)."""
    f = _FIELDS[name]
    runtime = name in RUNTIME
    d = ParameterDescriptor(description=f.metadata["help"], read_only=not runtime,
                            additional_constraints=("changes at runtime" if runtime else
                                                    "read-only: restart the node to change it"))
    if f.metadata.get("choices"):
        d.additional_constraints += f"; one of {list(f.metadata['choices'])}"
    if name in RANGES:
        lo, hi = RANGES[name]
        if isinstance(f.default, int):
            d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        else:
            d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    return d


def declare(node: Node) -> None:
    """Declare every :class:`NodeParams` field on ``node``, and the (read-only) extrinsics of the
    cameras of ``camera_names``."""
    for name, f in _FIELDS.items():
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        node.declare_parameter(name, default, descriptor(name))
    for cam in node.get_parameter("camera_names").value:
        for key in EXTRINSIC_KEYS:
            node.declare_parameter(f"extrinsics.{cam}.{key}", Parameter.Type.DOUBLE_ARRAY,
                                   ParameterDescriptor(description=f"ego_T_cam of {cam}: {key}", read_only=True))


def _value(name: str, value: Any) -> Any:
    return tuple(value) if isinstance(_FIELDS[name].default, tuple) else value


def _maybe(node: Node, name: str) -> Any:
    """The value of a parameter declared without a default; ``None`` while it has none."""
    try:
        return node.get_parameter(name).value
    except ParameterUninitializedException:
        return None


def read(node: Node, extrinsics: bool = True) -> NodeParams:
    """The declared values, validated (raises :class:`~scaocc_ros.params.ParamError`); with the
    extrinsics parameters when ``extrinsics`` (and ``extrinsics_source`` is ``params``)."""
    params = NodeParams(**{name: _value(name, node.get_parameter(name).value) for name in _FIELDS}).validate()
    if not extrinsics:
        return params
    raw = {cam: {key: _maybe(node, f"extrinsics.{cam}.{key}") for key in EXTRINSIC_KEYS}
           for cam in params.camera_names}
    return with_extrinsics(params, raw)


def changed(params: NodeParams, changes: Iterable[Parameter[Any]]) -> NodeParams:
    """``params`` with the runtime ``changes`` applied and validated (raises
    :class:`~scaocc_ros.params.ParamError` with the reason); other parameters are ignored."""
    values = {c.name: _value(c.name, c.value) for c in changes if c.name in _FIELDS}
    return dataclasses.replace(params, **values).validate()
