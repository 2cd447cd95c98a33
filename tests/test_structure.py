"""The package layout holds: no import cycles, a ROS-free core, the node apart from its tools.

Imports are read from the source (every ``import`` statement, lazy ones inside functions
included), so nothing here needs ROS installed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from scaocc_core import cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("scaocc_core", "scaocc_ros")
ROS_PREFIXES = ("rclpy", "rosbags", "scaocc_ros", "ament_index_python", "rosidl", "builtin_interfaces",
                "std_msgs", "sensor_msgs", "geometry_msgs", "nav_msgs", "visualization_msgs", "diagnostic_msgs",
                "tf2_msgs", "scaocc_msgs", "rcl_interfaces", "rosgraph_msgs")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(name: str) -> set[str]:
    """Every module ``name`` imports (absolute names; ``from pkg import submodule`` counts as the submodule)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up level - 1 packages from this one
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return out


def internal_graph() -> dict[str, set[str]]:
    """Module -> the modules of this repository it imports (packages' ``__init__`` excluded as targets)."""
    return {m: {i for i in imports(m) if i in MODULES and i not in PACKAGES and i != m} for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    graph = internal_graph()
    assert "scaocc_core.deploy.backends" in graph["scaocc_core.predictor"]  # the graph sees real edges
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # and finds cycles


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("scaocc_core")))
def test_core_never_imports_ros(module: str) -> None:
    ros = sorted(i for i in imports(module) if i.split(".")[0] in ROS_PREFIXES)
    assert ros == [], f"{module} imports {ros}"


def test_node_package_does_not_import_its_tools() -> None:
    node_modules = [m for m in MODULES if m.startswith("scaocc_ros") and not m.startswith("scaocc_ros.tools")]
    assert "scaocc_ros.pipeline" in node_modules and "scaocc_ros.tools.bag_infer" in MODULES
    for m in node_modules:
        assert not [i for i in imports(m) if i.startswith("scaocc_ros.tools")], m


def test_pipeline_and_params_need_no_ros_runtime() -> None:
    for m in ("scaocc_ros.pipeline", "scaocc_ros.params", "scaocc_ros.diagnostics", "scaocc_ros.outputs"):
        assert not [i for i in imports(m) if i.startswith("rclpy")], m


def test_ros_subcommands_come_from_the_entry_point() -> None:
    assert "scaocc_ros" not in (ROOT / "scaocc_core" / "cli.py").read_text()
    table = cli.commands()
    assert {"node", "cameras", "bag"} <= set(table) and set(cli.COMMANDS) < set(table)
    assert table["bag"][0] == "scaocc_ros.tools.bag" and table["node"][0] == "scaocc_ros.node"
    for name, (module, _) in table.items():
        assert module in MODULES, name
