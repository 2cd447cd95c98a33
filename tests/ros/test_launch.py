"""launch/occ.launch.py: loaded and run against small stand-ins of launch / launch_ros.

launch and launch_ros have no PyPI wheel, so the launch file is imported with recording
stand-ins of the few classes it uses; its OpaqueFunction is then run with the launch
arguments' defaults (plus overrides), exactly as ``ros2 launch`` resolves them.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "occ.launch.py"


class _Recorded:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class _LaunchDescription(_Recorded):
    pass


class _DeclareLaunchArgument(_Recorded):
    pass


class _OpaqueFunction(_Recorded):
    pass


class _Node(_Recorded):
    pass


class _EmitEvent(_Recorded):
    pass


class _RegisterEventHandler(_Recorded):
    pass


class _OnStateTransition(_Recorded):
    pass


class _ChangeState(_Recorded):
    pass


class _LaunchContext:
    def __init__(self) -> None:
        self.launch_configurations: dict[str, str] = {}


class _LaunchConfiguration:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: _LaunchContext) -> str:
        return context.launch_configurations[self.name]


def _module(name: str, **attrs: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


@pytest.fixture()
def launch_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    stubs = {
        "launch": _module("launch", LaunchDescription=_LaunchDescription),
        "launch.actions": _module("launch.actions", DeclareLaunchArgument=_DeclareLaunchArgument,
                                  OpaqueFunction=_OpaqueFunction, EmitEvent=_EmitEvent,
                                  RegisterEventHandler=_RegisterEventHandler),
        "launch.events": _module("launch.events", matches_action=lambda action: ("matches", action)),
        "launch.launch_context": _module("launch.launch_context", LaunchContext=_LaunchContext),
        "launch.substitutions": _module("launch.substitutions", LaunchConfiguration=_LaunchConfiguration),
        "launch_ros": _module("launch_ros"),
        "launch_ros.actions": _module("launch_ros.actions", LifecycleNode=_Node),
        "launch_ros.event_handlers": _module("launch_ros.event_handlers", OnStateTransition=_OnStateTransition),
        "launch_ros.events": _module("launch_ros.events"),
        "launch_ros.events.lifecycle": _module("launch_ros.events.lifecycle", ChangeState=_ChangeState),
        "ament_index_python": _module("ament_index_python"),
        "ament_index_python.packages": _module("ament_index_python.packages",
                                               get_package_share_directory=lambda package: str(ROOT)),
    }
    for name, mod in stubs.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("occ_launch", LAUNCH_FILE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def launch(mod: types.ModuleType, **arguments: str) -> tuple[dict[str, str], _Node]:
    """The resolved launch arguments and the one (lifecycle) node the description starts."""
    config, entities = launch_entities(mod, **arguments)
    (node,) = [e for e in entities if isinstance(e, _Node)]
    return config, node


def launch_entities(mod: types.ModuleType, **arguments: str) -> tuple[dict[str, str], list[Any]]:
    """The resolved launch arguments and everything the OpaqueFunction returns."""
    ld = mod.generate_launch_description()
    (entities,) = ld.args
    context = _LaunchContext()
    declared = [e for e in entities if isinstance(e, _DeclareLaunchArgument)]
    for d in declared:
        context.launch_configurations[d.args[0]] = d.kwargs["default_value"]
    unknown = set(arguments) - set(context.launch_configurations)
    assert not unknown, f"not launch arguments: {unknown}"
    context.launch_configurations.update(arguments)
    (opaque,) = [e for e in entities if isinstance(e, _OpaqueFunction)]
    return context.launch_configurations, opaque.kwargs["function"](context)


def overrides(node: _Node) -> dict[str, Any]:
    params = node.kwargs["parameters"]
    return params[1]


def test_defaults_remap_the_cameras_of_the_params_file(launch_module: types.ModuleType) -> None:
    config, node = launch(launch_module)
    assert config["params_file"] == str(ROOT / "config" / "occ_node.yaml")
    assert node.kwargs["parameters"][0] == config["params_file"]
    assert overrides(node)["device"] == "auto"
    assert overrides(node)["use_sim_time"] is False
    cams = yaml.safe_load((ROOT / "config" / "occ_node.yaml").read_text())["occ_node"]["ros__parameters"][
        "camera_names"]
    rules = dict(node.kwargs["remappings"])
    assert len(rules) == 3 * len(cams)
    for cam in cams:
        assert rules[f"{cam}/image"] == f"/sensors/cameras/{cam}/image"
        assert rules[f"{cam}/image/compressed"] == f"/sensors/cameras/{cam}/image/compressed"
        assert rules[f"{cam}/camera_info"] == f"/sensors/cameras/{cam}/camera_info"


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("True", True), ("TRUE", True), ("1", True), (" yes ", True),
    ("false", False), ("False", False), ("0", False), ("", False),
])
def test_use_sim_time_is_case_insensitive(launch_module: types.ModuleType, value: str, expected: bool) -> None:
    _, node = launch(launch_module, use_sim_time=value)
    assert overrides(node)["use_sim_time"] is expected


@pytest.mark.parametrize("section", ["occ_node", "/**"])
def test_any_rig_from_any_params_file(launch_module: types.ModuleType, tmp_path: Path, section: str) -> None:
    params = tmp_path / "rig.yaml"
    params.write_text(yaml.safe_dump({section: {"ros__parameters": {"camera_names": ["left", "right", "rear"]}}}))
    _, node = launch(launch_module, params_file=str(params), camera_ns="gmsl/", image_topic="image_rect",
                     device="cuda")
    assert dict(node.kwargs["remappings"]) == {
        f"{cam}/{topic}": f"/gmsl/{cam}/{target}"
        for cam in ("left", "right", "rear")
        for topic, target in (("image", "image_rect"), ("image/compressed", "image_rect/compressed"),
                              ("camera_info", "camera_info"))
    }
    assert overrides(node)["device"] == "cuda"


def test_params_file_without_cameras_uses_the_node_default(launch_module: types.ModuleType,
                                                           tmp_path: Path) -> None:
    from scaocc_ros.params import NodeParams

    params = tmp_path / "plain.yaml"
    params.write_text(yaml.safe_dump({"occ_node": {"ros__parameters": {"device": "cpu"}}}))
    _, node = launch(launch_module, params_file=str(params))
    assert [src for src, _ in node.kwargs["remappings"]][::3] == [f"{c}/image" for c in NodeParams().camera_names]


def test_the_launch_file_holds_no_camera_list() -> None:
    text = LAUNCH_FILE.read_text()
    assert "cam_front" not in text and "CAMERAS" not in text


def test_autostart_emits_configure_then_activate(launch_module: types.ModuleType) -> None:
    from lifecycle_msgs.msg import Transition

    _, entities = launch_entities(launch_module)
    node, handler, configure = entities
    assert overrides(node)["autostart"] is False  # the node itself never self-starts under launch
    assert isinstance(configure, _EmitEvent)
    assert configure.kwargs["event"].kwargs == {"lifecycle_node_matcher": ("matches", node),
                                                "transition_id": Transition.TRANSITION_CONFIGURE}
    on_inactive = handler.args[0]
    assert isinstance(handler, _RegisterEventHandler) and isinstance(on_inactive, _OnStateTransition)
    assert on_inactive.kwargs["target_lifecycle_node"] is node and on_inactive.kwargs["goal_state"] == "inactive"
    (activate,) = on_inactive.kwargs["entities"]
    assert activate.kwargs["event"].kwargs["transition_id"] == Transition.TRANSITION_ACTIVATE


def test_without_autostart_a_lifecycle_manager_drives_it(launch_module: types.ModuleType) -> None:
    _, entities = launch_entities(launch_module, autostart="False")
    (node,) = entities
    assert isinstance(node, _Node) and overrides(node)["autostart"] is False
