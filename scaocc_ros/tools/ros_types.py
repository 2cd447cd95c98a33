"""rosbags type support: the ROS 2 Kilted typestore plus this repository's ``.msg`` files.

Bags written here carry the same message definitions the node publishes on the wire
(Kilted's standard messages, ``scaocc_msgs`` and the upstream ``tf2_msgs/TFMessage``).
:func:`to_rosbags` turns any message-like object whose fields carry the ROS field names (an
rclpy message, a rosbags message) into the typestore's dataclass, so the node's own output
builders serve the bag tools too. Nothing here imports rclpy.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

ROOT = Path(__file__).resolve().parents[2]
#: Interface packages built from ``msg/`` (package name -> directory of its ``.msg`` files).
LOCAL_PACKAGES = {"scaocc_msgs": ROOT / "msg", "tf2_msgs": ROOT / "msg" / "tf2_msgs" / "msg"}

#: ROS base type -> numpy dtype of rosbags' array fields.
NUMPY_TYPES = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
    "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}


class MessageTypeError(TypeError):
    """A message cannot be converted to the bag type (missing field, unknown type)."""


def _msg_dir(package: str) -> Path:
    """Directory of ``package``'s ``.msg`` files: the source tree, else an installed share dir."""
    local = LOCAL_PACKAGES[package]
    if local.is_dir():
        return local
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        candidate = Path(prefix) / "share" / package / "msg"
        if prefix and candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no .msg files of {package} in {local} nor on AMENT_PREFIX_PATH")


@lru_cache(maxsize=1)
def typestore() -> Typestore:
    """The Kilted typestore with ``scaocc_msgs`` (and ``tf2_msgs``, if missing) registered."""
    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for package in LOCAL_PACKAGES:
        for path in sorted(_msg_dir(package).glob("*.msg")):
            name = f"{package}/msg/{path.stem}"
            if name not in store.fielddefs:
                types.update(get_types_from_msg(path.read_text(), name))
    store.register(types)
    return store


def msgtype_of(msg: object) -> str:
    """``pkg/msg/Name`` of an rclpy (``pkg.msg._name.Name``) or rosbags message."""
    name = getattr(msg, "__msgtype__", None)
    if isinstance(name, str):
        return name
    module = type(msg).__module__.split(".")
    if len(module) < 2 or module[1] != "msg":
        raise MessageTypeError(f"{type(msg).__qualname__} from {type(msg).__module__} is not a ROS message class")
    return f"{module[0]}/msg/{type(msg).__name__}"


def to_rosbags(msg: object, typename: str | None = None, store: Typestore | None = None) -> Any:
    """The typestore dataclass of ``typename`` (default: ``msg``'s own type) holding ``msg``'s fields.

    Numeric arrays become numpy arrays of the field's dtype (what rosbags serialises),
    nested messages are converted recursively.
    """
    store = store or typestore()
    typename = typename or msgtype_of(msg)
    if typename not in store.fielddefs:
        raise MessageTypeError(f"message type {typename} is not in the typestore")
    _, fields = store.fielddefs[typename]
    values: dict[str, Any] = {}
    for name, (kind, detail) in fields:
        if not hasattr(msg, name):
            raise MessageTypeError(f"{type(msg).__name__} has no field {name!r} of {typename}")
        values[name] = _convert(getattr(msg, name), kind, detail, store)
    return store.types[typename](**values)


def _convert(value: Any, kind: Nodetype, detail: Any, store: Typestore) -> Any:
    if kind == Nodetype.BASE:
        return value
    if kind == Nodetype.NAME:
        return to_rosbags(value, detail, store)
    (sub_kind, sub_detail), _ = detail  # ARRAY or SEQUENCE of (element kind, element detail)
    if sub_kind == Nodetype.NAME:
        return [to_rosbags(v, sub_detail, store) for v in value]
    base = sub_detail[0]
    if base in NUMPY_TYPES:
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = np.frombuffer(value, dtype=np.uint8)
        return np.asarray(value).astype(NUMPY_TYPES[base], copy=False)  # array('B'), lists, numpy
    return list(value)  # strings


def serialize(msg: object, typename: str | None = None) -> bytes:
    """CDR bytes (with the encapsulation header rmw uses) of any message-like ``msg``."""
    store = typestore()
    typename = typename or msgtype_of(msg)
    converted = msg if getattr(msg, "__msgtype__", None) == typename else to_rosbags(msg, typename, store)
    return bytes(store.serialize_cdr(converted, typename))


def deserialize(data: bytes | memoryview, typename: str) -> Any:
    """A rosbags message from CDR bytes."""
    return typestore().deserialize_cdr(data, typename)
