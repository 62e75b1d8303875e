"""Command-line and Accelerate set-up shared by the training scripts in `training/`.

Every script takes the same run options (output folder, seed, epochs, resume, CPU) and starts
Accelerate the same way, so these pieces live here once.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["add_run_arguments", "parse_run_arguments", "start_accelerator"]


def add_run_arguments(
    parser: argparse.ArgumentParser,
    *,
    output_default: str = "runs/<model_id>/seed-<seed>",
    epochs_help: str = "replace the config's number of epochs (for quick runs)",
) -> None:
    """Add `--output-dir`, `--seed`, `--epochs`, `--resume` and `--cpu` to a training script's parser."""
    parser.add_argument("--output-dir", help=f"output folder (default: {output_default})")
    parser.add_argument("--seed", type=int, help="training seed (default: the config's)")
    parser.add_argument("--epochs", type=int, help=epochs_help)
    parser.add_argument("--resume", action="store_true", help="continue from the last saved state in the output folder")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when a GPU is present")


def parse_run_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse `argv` and reject an `--epochs` value below 1 with a usage error."""
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    return args


def start_accelerator(output_dir: str | Path, *, cpu: bool):
    """Create an `Accelerator` that saves its state under `output_dir`, with INFO logs on the main process only."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    accelerator = Accelerator(cpu=cpu, project_config=ProjectConfiguration(project_dir=str(output_dir)))
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING)
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    return accelerator
