"""Installs scaocc_core, scaocc_ros and the ``scaocc`` / ``occ_node`` commands.

``scaocc_ros`` adds its ``scaocc`` subcommands (node, cameras, bag) through the
``scaocc.commands`` entry point group.

It doubles as the ament_python setup of the ROS package ``scaocc_ros`` (see README):
launch files, configs and the package marker go to ``share/scaocc_ros`` via data_files.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "scaocc_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["scaocc_core", "scaocc_core.*", "scaocc_ros", "scaocc_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.foxglove.json")),
        (f"share/{PACKAGE}/config/model", glob("config/model/*.yaml")),
    ],
    install_requires=["setuptools"],
    # The TensorRT backend supports TensorRT 10 only (scaocc_core/deploy/trt_engine.py;
    # README, "TensorRT"). The 10.16 metapackage pulls the CUDA 13 build (tensorrt_cu13);
    # with a CUDA 12 torch install the tensorrt-cu12 extra instead.
    extras_require={
        "tensorrt": ["tensorrt>=10.0,<11"],
        "tensorrt-cu12": ["tensorrt-cu12>=10.0,<11"],
    },
    zip_safe=True,
    maintainer="scaocc maintainers",
    maintainer_email="maintainers@scaocc.dev",
    description="Camera-only semantic 3D occupancy node (Semantic Causality-Aware occupancy).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "scaocc = scaocc_core.cli:main",
            "occ_node = scaocc_ros.node:main",
        ],
        "scaocc.commands": ["scaocc_ros = scaocc_ros.commands:COMMANDS"],
    },
)
