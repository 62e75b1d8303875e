"""The `zoo` command line: list, inspect, run, evaluate, document, train, publish and demo checkpoints."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]

logger = logging.getLogger("zoo")


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=None, sort_keys=False))


def cmd_list(args: argparse.Namespace) -> int:
    import zoo

    rows = [zoo.info(model_id) for model_id in zoo.list_models()]
    if args.json:
        _print_json([{k: row[k] for k in ("id", "method", "dataset", "task", "bundled", "hub_repo")} for row in rows])
        return 0
    width = max(len(row["id"]) for row in rows)
    print(f"{'id':<{width}}  {'method':<10}  {'dataset':<26}  bundled")
    for row in rows:
        print(f"{row['id']:<{width}}  {row['method']:<10}  {row['dataset']:<26}  {'yes' if row['bundled'] else 'no'}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import zoo

    print(json.dumps(zoo.info(args.id), indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import zoo
    from zoo.data.images import ImageInputError, expand_image_paths

    model = zoo.load(args.id, revision=args.revision)
    failures = 0
    if getattr(model, "video_output", False):
        return _predict_video(model, args)
    try:
        paths = expand_image_paths(args.inputs)
    except ImageInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in paths:
        try:
            result = model.predict(str(path))
        except ImageInputError as error:
            failures += 1
            print(f"error: {error}", file=sys.stderr)
            continue
        _print_json({"input": str(path), **result})
    return 1 if failures else 0


def _video_frame_paths(inputs: list[str]) -> list[str]:
    """List video frames in playing order: files as given, each folder's images in natural order (frame_2 before frame_10)."""
    import re

    from zoo.data.images import expand_image_paths

    def natural(path: Path) -> list:
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]

    frames: list[str] = []
    for item in inputs:
        paths = expand_image_paths([item])
        frames += [str(p) for p in (sorted(paths, key=natural) if Path(item).is_dir() else paths)]
    return frames


def _predict_video(model, args: argparse.Namespace) -> int:
    """Drive a reenactment model with one .npz of motion parameters or with video frames (files or a folder), in order."""
    from zoo.data.images import ImageInputError

    inputs = [str(item) for item in args.inputs]
    output = Path(args.output or "reenacted.gif")
    if output.suffix.lower() not in (".gif", ".png"):
        print(f"error: cannot write video to {output}; use a .gif or .png name", file=sys.stderr)
        return 1
    if output.is_dir() or not output.parent.is_dir():
        print(f"error: cannot write {output}: it is a folder or its folder does not exist", file=sys.stderr)
        return 1
    if any(item.endswith(".npz") for item in inputs) and len(inputs) > 1:
        print("error: a driving motion .npz must be the only input", file=sys.stderr)
        return 1
    if getattr(model, "generic", False):
        print(
            f"note: {type(model).__name__} is the generic model, not adapted to any person; "
            "adapt it in Python with `model.adapted(frames, motion)` first", file=sys.stderr,
        )
    name = getattr(model, "display_name", type(model).__name__)
    if args.max_frames is not None and args.max_frames < 1:
        print(f"error: --max-frames must be at least 1, got {args.max_frames}", file=sys.stderr)
        return 1
    needs_source = getattr(model, "needs_source", False)
    if needs_source and not args.source:
        print(f"error: {name} animates a source image: pass it with --source IMAGE", file=sys.stderr)
        return 1
    unused = [flag for flag, value, accepted in (
        ("--source", args.source, needs_source),
        ("--audio", args.audio, getattr(model, "audio_dim", 0) > 0),
        ("--gaze", args.gaze, hasattr(model, "gaze_edits")),
    ) if value and not accepted]
    if unused:
        hints = {
            "--gaze": "gaze editing is Free-HeadGAN's (free-headgan-synthheads)",
            "--audio": "audio is HeadGAN's (headgan-synthheads)",
            "--source": "it renders the person it was trained on",
        }
        reasons = "; ".join(hints[flag] for flag in unused)
        print(f"error: {name} does not take {', '.join(unused)}: {reasons}", file=sys.stderr)
        return 1
    try:
        driving = inputs[0] if inputs[0].endswith(".npz") else _video_frame_paths(inputs)
        if needs_source:
            options = {"audio": args.audio} if args.audio else {}
            if args.gaze:
                options["gaze_degrees"] = args.gaze
            result = model.predict(args.source if len(args.source) > 1 else args.source[0], driving, output=output,
                                   max_frames=args.max_frames, **options)
        else:
            result = model.predict(driving, output=output, max_frames=args.max_frames)
    except (ImageInputError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    _print_json({"input": inputs, **result})
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from zoo.evaluation import evaluate

    command = "zoo " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["eval"] else None
    results = evaluate(
        args.id, split=args.split, seeds=args.seed, runs_dir=args.runs_dir, output=args.output, command=command,
        run_name=args.run_name,
    )
    print(json.dumps(results, indent=2))
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from zoo.cards import render_card

    path = render_card(args.id, output_dir=args.output_dir)
    print(path)
    return 0


def training_command(model_id: str, *, seed: int | None, output_dir: str | None, resume: bool, epochs: int | None, processes: int) -> list[str]:
    """Build the command line that trains `model_id` with its registered script and config."""
    from zoo.registry import get_info, repo_root

    info = get_info(model_id)
    root = repo_root()
    script, config = root / info.train_script, root / info.train_config
    for path in (script, config):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: training needs a source checkout of zoo (git clone), not only the installed package"
            )
    if processes > 1:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(script)]
    else:
        command = [sys.executable, str(script)]
    command += ["--config", str(config)]
    if seed is not None:
        command += ["--seed", str(seed)]
    if output_dir:
        command += ["--output-dir", output_dir]
    if resume:
        command.append("--resume")
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    return command


def cmd_train(args: argparse.Namespace) -> int:
    if args.processes < 1:
        print(f"error: --processes must be at least 1, got {args.processes}", file=sys.stderr)
        return 2
    if args.epochs is not None and args.epochs < 1:
        print(f"error: --epochs must be at least 1, got {args.epochs}", file=sys.stderr)
        return 2
    command = training_command(
        args.id, seed=args.seed, output_dir=args.output_dir, resume=args.resume, epochs=args.epochs, processes=args.processes
    )
    print("running: " + " ".join(shlex.quote(c) for c in command), file=sys.stderr)
    if args.dry_run:
        return 0
    return subprocess.call(command)


def cmd_push(args: argparse.Namespace) -> int:
    from zoo.hub import hub_is_offline, is_repo_id
    from zoo.registry import bundled_checkpoint_dir, get_info

    get_info(args.id)
    folder = Path(args.folder) if args.folder else bundled_checkpoint_dir() / args.id
    if not is_repo_id(args.repo_id):
        print(f"error: --repo-id must have the form ORG/NAME, got {args.repo_id!r}", file=sys.stderr)
        return 2
    if not (folder / "model.safetensors").is_file() or not (folder / "config.json").is_file():
        print(f"error: {folder} is not a checkpoint folder (needs config.json and model.safetensors)", file=sys.stderr)
        return 2
    if hub_is_offline():
        print(
            f"error: cannot push {args.id} to {args.repo_id}: Hub access is disabled (HF_HUB_OFFLINE=1). "
            "Unset HF_HUB_OFFLINE on a machine with network access and run the command again; nothing was uploaded.",
            file=sys.stderr,
        )
        return 2
    from huggingface_hub import HfApi

    api = HfApi(token=args.token)
    try:
        api.create_repo(args.repo_id, repo_type="model", private=args.private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(folder),
            # Only the Hub layout: training state or caches left in the folder stay local.
            allow_patterns=["config.json", "model.safetensors", "README.md", "assets/*"],
            repo_id=args.repo_id,
            repo_type="model",
            revision=args.branch,
            commit_message=args.message or f"Upload {args.id} from zoo",
        )
    except Exception as error:  # noqa: BLE001 - network and HTTP errors come from several libraries
        print(f"error: upload of {folder} to {args.repo_id} failed ({type(error).__name__}): {error}", file=sys.stderr)
        return 1
    print(commit.commit_url if hasattr(commit, "commit_url") else commit)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from zoo.registry import repo_root

    app = repo_root() / "spaces" / "app.py"
    if not app.is_file():
        print(f"error: {app} not found; the demo needs a source checkout of zoo", file=sys.stderr)
        return 2
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Replace this process, so stopping `zoo demo` stops the server too.
    os.execv(sys.executable, [sys.executable, str(app), "--host", args.host, "--port", str(args.port)])
    return 0


def cmd_synthheads(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    from zoo.data.synthheads import dataset as synthheads, sheet

    if args.action in ("sheet", "stats"):
        folder = Path(args.output).resolve().parent
        if Path(args.output).suffix.lower() != ".png" or not folder.is_dir():
            print(f"error: OUT must be a .png file in an existing folder, got {args.output}", file=sys.stderr)
            return 2
    try:
        if args.action == "sheet":
            sheet.build_contact_sheet(args.size, args.seed, args.identities).save(args.output, format="PNG")
            print(args.output)
        elif args.action == "stats":
            json_path = args.json or str(Path(args.output).with_suffix(".json"))
            stats = sheet.write_statistics(
                args.output, json_path, num_identities=args.identities, images_per_identity=args.images_per_identity,
                seed=args.seed, flow_clips=args.flow_clips,
            )
            print(json_path)
            if args.card:
                template = Path(args.card).with_suffix(".template.md")
                if not template.is_file():
                    print(f"error: card template {template} not found; --card names the card it renders", file=sys.stderr)
                    return 2
                print(sheet.render_dataset_card(stats, template, args.card))
        else:
            fields = {field.name for field in dataclasses.fields(synthheads.SynthHeadsConfig)}
            options = {key: value for key, value in vars(args).items() if key in fields and value is not None}
            start = time.perf_counter()
            built = synthheads.build_synthheads(cache=not args.no_cache, cache_dir=args.cache_dir, **options)
            if args.output:
                built.save_to_disk(args.output)
            _print_json({
                "splits": {name: split.num_rows for name, split in built.items()},
                "seconds": round(time.perf_counter() - start, 2),
                "config": synthheads.config_of(built).to_dict(),
                "saved_to": args.output,
            })
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="Pretrained research models behind one API.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub = commands.add_parser("list", help="list registered checkpoints")
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.set_defaults(func=cmd_list)

    sub = commands.add_parser("info", help="show the registry entry of a checkpoint")
    sub.add_argument("id")
    sub.set_defaults(func=cmd_info)

    sub = commands.add_parser("predict", help="run a checkpoint on input files or folders (one JSON line per input)")
    sub.add_argument("id", help="registered id, checkpoint folder or Hub repo id")
    sub.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="image files or folders of images; for reenactment models, one .npz of driving motion or the driving video's frames",
    )
    sub.add_argument("--revision", help="Hub revision")
    sub.add_argument("--output", help="reenactment models: the .gif (or .png strip) to write (default: reenacted.gif)")
    sub.add_argument(
        "--max-frames", type=int, default=250,
        help="reenactment models: generate at most this many frames (default: 250); the JSON gives the driving count",
    )
    sub.add_argument(
        "--source", action="append", metavar="IMAGE",
        help="one-shot reenactment models (HeadGAN, Free-HeadGAN): the source image to animate; "
        "repeat for several images of one person (Free-HeadGAN fuses them)",
    )
    sub.add_argument("--audio", metavar="WAV", help="HeadGAN: the driving audio as a PCM .wav file (default: silence)")
    sub.add_argument(
        "--gaze", type=float, nargs=2, metavar=("YAW", "PITCH"),
        help="Free-HeadGAN: look in this direction (degrees, relative to the head) instead of the driving gaze",
    )
    sub.set_defaults(func=cmd_predict)

    sub = commands.add_parser("eval", help="evaluate a checkpoint and write cards/results/ID.json")
    sub.add_argument("id")
    sub.add_argument("--split", default="test", help="labelled split to score (default: test)")
    sub.add_argument(
        "--seed", type=int, action="append",
        help="training seed to score; repeat for several (default: the bundled checkpoint's seed). "
        "Other seeds are read from RUNS_DIR/ID/seed-N, written by `zoo train ID --seed N`",
    )
    sub.add_argument("--runs-dir", default="runs", help="folder of retrained seeds (default: runs)")
    sub.add_argument("--output", help="results file (default: cards/results/ID.json)")
    sub.add_argument(
        "--run-name",
        help="evaluate a variant (ablation) trained into RUNS_DIR/RUN_NAME/seed-N instead of the bundled weights; "
        "results go to cards/results/RUN_NAME.json",
    )
    sub.set_defaults(func=cmd_eval)

    sub = commands.add_parser("card", help="render checkpoints/ID/README.md from the card source and results")
    sub.add_argument("id")
    sub.add_argument("--output-dir", help="write the card here instead of the bundled checkpoint folder")
    sub.set_defaults(func=cmd_card)

    sub = commands.add_parser("train", help="train a checkpoint with its registered script and config")
    sub.add_argument("id")
    sub.add_argument("--seed", type=int, help="training seed (default: the config's)")
    sub.add_argument("--output-dir", help="output folder (default: runs/ID/seed-N)")
    sub.add_argument("--resume", action="store_true", help="continue from the last saved training state")
    sub.add_argument("--epochs", type=int, help="epochs of the final stage (for quick runs)")
    sub.add_argument("--processes", type=int, default=1, help="CPU processes to train with through accelerate (default: 1)")
    sub.add_argument("--dry-run", action="store_true", help="print the command without running it")
    sub.set_defaults(func=cmd_train)

    sub = commands.add_parser("push", help="upload a checkpoint folder to the Hugging Face Hub")
    sub.add_argument("id")
    sub.add_argument("--repo-id", required=True, help="target Hub repo, ORG/NAME")
    sub.add_argument("--folder", help="checkpoint folder (default: the bundled one)")
    sub.add_argument("--branch", help="target branch (default: main)")
    sub.add_argument("--message", help="commit message")
    sub.add_argument("--private", action="store_true", help="create the repo as private")
    sub.add_argument("--token", help="Hub token (default: the logged-in one)")
    sub.set_defaults(func=cmd_push)

    sub = commands.add_parser("synthheads", help="build SynthHeads data and draw its dataset-card figures")
    actions = sub.add_subparsers(dest="action", required=True, metavar="ACTION")
    action = actions.add_parser("sheet", help="write the contact sheet of renders as a PNG")
    action.add_argument("output", metavar="OUT.png", help="PNG file to write")
    action.add_argument("--size", type=int, default=128, help="render size of each tile in pixels (default: 128)")
    action.add_argument("--seed", type=int, default=0, help="dataset seed of the identities shown (default: 0)")
    action.add_argument("--identities", type=int, default=4, help="identity rows of the expression section (default: 4)")
    action = actions.add_parser("stats", help="write the label-distribution figure (PNG) and its numbers (JSON)")
    action.add_argument("output", metavar="OUT.png", help="PNG file to write")
    action.add_argument("--json", help="JSON file for the numbers (default: OUT.json)")
    action.add_argument("--identities", type=int, default=500, help="identities sampled (default: 500)")
    action.add_argument("--images-per-identity", type=int, default=40, help="faces per identity (default: 40)")
    action.add_argument("--flow-clips", type=int, default=4, help="clips rendered for the flow check, 0 skips it (default: 4)")
    action.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    action.add_argument(
        "--card", help="also render this dataset card from CARD's .template.md with the numbers (e.g. cards/datasets/synthheads.md)"
    )
    action = actions.add_parser("build", help="build a SynthHeads dataset into the cache and print its split sizes")
    action.add_argument("--kind", choices=("images", "clips"), help="stills or clips (default: images)")
    action.add_argument("--num-identities", type=int, help="people, divided between the splits")
    action.add_argument("--images-per-identity", type=int, help="stills per person")
    action.add_argument("--clips-per-identity", type=int, help="clips per person")
    action.add_argument("--num-frames", type=int, help="frames per clip (at 25 fps)")
    action.add_argument("--image-size", type=int, help="render size in pixels")
    action.add_argument("--seed", type=int, help="seed of every random draw (default: 0)")
    action.add_argument("--no-conditioning", dest="conditioning", action="store_false", default=None,
                        help="leave out the NMFC, mask, sketch, eye and depth images")
    action.add_argument("--no-flow", dest="flow", action="store_false", default=None, help="leave out the optical flow of clips")
    action.add_argument("--no-cache", action="store_true", help="render without reading or writing the cache")
    action.add_argument("--cache-dir", help="cache folder (default: $ZOO_CACHE/synthheads or ~/.cache/zoo/synthheads)")
    action.add_argument("--output", help="also save the DatasetDict to this folder (datasets.save_to_disk)")
    sub.set_defaults(func=cmd_synthheads)

    sub = commands.add_parser("demo", help="serve the web demo of all methods")
    sub.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    sub.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    sub.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from zoo.data.images import ImageInputError
    from zoo.evaluation import EvaluationError
    from zoo.hub import CheckpointError
    from zoo.registry import UnknownModelError

    parser = build_parser()
    args = parser.parse_args(argv)
    # Configure zoo's own logger only: libraries such as huggingface_hub print their own warnings.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("zoo").addHandler(handler)
    logging.getLogger("zoo").setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except (UnknownModelError, CheckpointError, EvaluationError, ImageInputError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of stdout closed early (`zoo predict ... | head`). Point stdout at devnull so
        # that Python's flush at exit does not raise again, and end quietly as Unix tools do.
        # A stdout without a file descriptor (a captured or in-memory stream) has nothing to redirect.
        try:
            target = sys.stdout.fileno()
        except (OSError, ValueError):
            return 141
        os.dup2(os.open(os.devnull, os.O_WRONLY), target)
        return 141


if __name__ == "__main__":
    sys.exit(main())
