"""config/occ.rviz and config/occ.foxglove.json name only topics the node has.

The node's topics are read from its source, not from a running node: the topic argument of
every ``create_publisher`` / ``create_subscription`` / ``create_lifecycle_publisher`` call in
``scaocc_ros/node.py`` and the ``scaocc_ros`` modules it imports (f-string fields filled with
the cameras of ``config/occ_node.yaml`` or with the string constants of those modules, e.g.
the output names), resolved for the node name of ``config/occ_node.yaml`` in the root
namespace without remapping.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CREATE_CALLS = {"create_publisher", "create_subscription", "create_lifecycle_publisher"}
PARAMS_DOC = yaml.safe_load((ROOT / "config" / "occ_node.yaml").read_text())
(NODE_NAME,) = PARAMS_DOC
PARAMS = PARAMS_DOC[NODE_NAME]["ros__parameters"]
NAME_TOKEN = r"[A-Za-z][A-Za-z0-9_]*"


def node_modules() -> list[Path]:
    """``scaocc_ros/node.py`` and every ``scaocc_ros`` module it imports, transitively."""
    todo, seen = ["scaocc_ros.node"], set()
    while todo:
        name = todo.pop()
        path = ROOT / (name.replace(".", "/") + ".py")
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("scaocc_ros"):
                todo.append(node.module)
                todo += [f"{node.module}.{a.name}" for a in node.names]  # from scaocc_ros import qos
            elif isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("scaocc_ros")]
    return sorted(ROOT / (n.replace(".", "/") + ".py") for n in seen)


def _topic_arg(call: ast.Call) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == "topic":
            return kw.value
    return call.args[1] if len(call.args) > 1 else None


def _pattern(node: ast.expr) -> str | None:
    """A regex for a topic argument: literal text, f-string fields as name tokens."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(re.escape(str(v.value)))
            else:
                parts.append(f"({NAME_TOKEN})")
        return "".join(parts)
    return None


def node_topics() -> tuple[list[re.Pattern[str]], set[str]]:
    """The node's topic patterns (resolved names) and the values their fields may take."""
    patterns: list[re.Pattern[str]] = []
    values = set(PARAMS["camera_names"])
    for path in node_modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(NAME_TOKEN, node.value):
                values.add(node.value)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CREATE_CALLS:
                arg = _topic_arg(node)
                pattern = _pattern(arg) if arg is not None else None
                assert pattern is not None, f"{path.name}:{node.lineno}: topic is not a string or f-string"
                if pattern.startswith(re.escape("~/")):  # private: /<node>/...
                    pattern = f"/{NODE_NAME}/" + pattern[len(re.escape("~/")):]
                elif not pattern.startswith("/"):  # relative: root namespace
                    pattern = "/" + pattern
                patterns.append(re.compile(pattern))
    return patterns, values


def on_node(topic: str) -> bool:
    patterns, values = node_topics()
    for p in patterns:
        m = p.fullmatch(topic)
        if m and all(g in values for g in m.groups()):
            return True
    return False


def rviz_topics(doc: Any) -> Iterator[str]:
    """``Topic: {Value: ...}`` (and any ``... Topic`` key) of every display, recursively."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key.endswith("Topic") and isinstance(value, dict) and value.get("Value"):
                yield value["Value"]
            yield from rviz_topics(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from rviz_topics(item)


def foxglove_topics(doc: Any) -> Iterator[str]:
    """Every key or string value that is a ROS name (``/...``): the panels' topics."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key.startswith("/"):
                yield key
            yield from foxglove_topics(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from foxglove_topics(item)
    elif isinstance(doc, str) and doc.startswith("/"):
        yield doc


RVIZ = yaml.safe_load((ROOT / "config" / "occ.rviz").read_text())
FOXGLOVE = json.loads((ROOT / "config" / "occ.foxglove.json").read_text())
LAYOUTS = {"occ.rviz": sorted(set(rviz_topics(RVIZ))), "occ.foxglove.json": sorted(set(foxglove_topics(FOXGLOVE)))}


def test_the_node_topics_are_found() -> None:
    assert ROOT / "scaocc_ros" / "outputs.py" in node_modules()
    for topic in ("/occ_node/points", "/occ_node/markers", "/occ_node/bev", "/diagnostics",
                  f"/{PARAMS['camera_names'][0]}/image", f"/{PARAMS['camera_names'][0]}/camera_info"):
        assert on_node(topic), topic
    for topic in ("/occ_node/nothing", "/not_a_camera/image", "/points"):
        assert not on_node(topic), topic


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_topic_of_the_layout_is_on_the_node(layout: str) -> None:
    topics = LAYOUTS[layout]
    missing = [t for t in topics if not on_node(t)]
    assert not missing, f"{layout} names topics the node does not have: {missing}"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_shows_the_cameras_and_outputs(layout: str) -> None:
    topics = set(LAYOUTS[layout])
    wanted = {f"/{NODE_NAME}/{name}" for name in ("points", "obstacles", "markers", "bev")}
    wanted |= {f"/{cam}/image" for cam in PARAMS["camera_names"]}
    assert wanted <= topics, sorted(wanted - topics)


def test_layouts_use_the_output_frame() -> None:
    assert RVIZ["Visualization Manager"]["Global Options"]["Fixed Frame"] == PARAMS["ego_frame"]
    assert FOXGLOVE["configById"]["3D!occ"]["followTf"] == PARAMS["ego_frame"]


def test_rviz_asks_for_the_bev_as_published() -> None:
    """~/bev is transient local (a late RViz, like Nav2's static layer, gets the newest grid)."""
    (bev,) = [d for d in RVIZ["Visualization Manager"]["Displays"] if d.get("Class") == "rviz_default_plugins/Map"]
    assert bev["Topic"]["Durability Policy"] == "Transient Local" and bev["Topic"]["Value"] == f"/{NODE_NAME}/bev"
