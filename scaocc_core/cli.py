"""The ``scaocc`` command line: one subcommand per job, each with its own ``--help``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their subcommand runs. Other installed
packages add subcommands through the ``scaocc.commands`` entry point group: each entry is a
``{name: (module, help)}`` table like :data:`COMMANDS` (the ROS package adds ``node``,
``cameras`` and ``bag`` this way), so this file names no ROS module and core-only work
never loads ROS.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import entry_points

from scaocc_core.memory import keep_freed_memory

#: subcommand -> (module, one-line help). Kept explicit so ``scaocc --help`` is the index.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("scaocc_core.data.synthetic.cli", "render a synthetic driving dataset (images, Occ3D labels, manifest)"),
    "prepare-nuscenes": ("scaocc_core.data.nuscenes", "convert BEVDet/Occ3D nuScenes infos into a scaocc manifest"),
    "viz": ("scaocc_core.viz", "write PNGs: camera views, BEV maps, 3D voxels"),
    "pretrain": ("scaocc_core.training.pretrain", "pretrain the image encoder on 2D semantics and depth"),
    "train": ("scaocc_core.training.train", "train a model (single process or torchrun DDP)"),
    "eval": ("scaocc_core.training.evaluate", "evaluate a checkpoint: Occ3D mIoU table and JSON"),
    "robustness": ("scaocc_core.training.robustness", "mIoU under increasing camera-parameter noise"),
    "consistency": ("scaocc_core.training.consistency", "2D-to-3D semantic consistency of the causal attention"),
    "ablation": ("scaocc_core.training.ablation", "train and evaluate the paper's cumulative ablation ladder"),
    "export": ("scaocc_core.deploy.export", "export a checkpoint to ONNX (with a parity check)"),
}
#: Entry point group of the subcommand tables other packages register.
PLUGIN_GROUP = "scaocc.commands"


def commands() -> dict[str, tuple[str, str]]:
    """The core's subcommands plus those of every installed package that registers some."""
    out = dict(COMMANDS)
    for ep in entry_points(group=PLUGIN_GROUP):
        out.update(ep.load())
    return out


def build_parser(table: dict[str, tuple[str, str]]) -> argparse.ArgumentParser:
    """The top-level parser of the subcommands in ``table``; their arguments are added lazily by :func:`main`."""
    parser = argparse.ArgumentParser(
        prog="scaocc",
        description="Camera-only 3D semantic occupancy (Occ3D) with semantic-causality training.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in table.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``scaocc`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    table = commands()
    parser = build_parser(table)
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    module_name, help_text = table[args.command]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"scaocc {args.command}: unavailable ({exc})", file=sys.stderr)
        return 2
    sub = argparse.ArgumentParser(prog=f"scaocc {args.command}", description=module.__doc__ or help_text,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(sub)
    sub_args = sub.parse_args(rest)
    keep_freed_memory()  # every subcommand runs tensors through malloc (scaocc_core.memory)
    try:
        return int(module.run(sub_args) or 0)
    except Exception as exc:
        if not isinstance(exc, bad_input_errors()):
            raise
        print(f"scaocc {args.command}: {one_line(exc)}", file=sys.stderr)
        return 1


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean a bad file or configuration (a corrupt or missing checkpoint, a config
    with an unknown key or a wrong type, a missing file): one line and exit 1, no traceback."""
    import yaml

    from scaocc_core.checkpoint import CheckpointError
    from scaocc_core.config import ConfigError

    return CheckpointError, ConfigError, FileNotFoundError, IsADirectoryError, NotADirectoryError, yaml.YAMLError


def one_line(exc: BaseException) -> str:
    """The first line of an error message (torch and yaml messages run over many lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
