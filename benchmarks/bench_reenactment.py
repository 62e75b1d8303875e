"""Frames per second of the bundled reenactment models at their resolution, on this machine.

    .venv/bin/python benchmarks/bench_reenactment.py
    .venv/bin/python benchmarks/bench_reenactment.py --models head2head-synthheads --frames 96 --threads 1 2

For each model and thread count it drives the model with a SynthHeads clip's motion and times,
best of `--repeats`, (a) the end-to-end step: conditioning render of every frame, then the
sequential generation, and (b) the generation alone. It prints frames per second and their ratio
to the 25 fps target, and the share of time spent rendering.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

TARGET_FPS = 25.0


def driving_motion(frames: int, image_size: int):
    """Motion of one small SynthHeads clip, repeated to `frames` frames."""
    from zoo.data.synthheads import build_synthheads
    from zoo.reenactment.conditioning import MotionParameters

    dataset = build_synthheads(
        kind="clips", num_identities=3, clips_per_identity=1, num_frames=48, image_size=image_size, conditioning=False,
        flow=False, splits={"train": 0.34, "validation": 0.33, "test": 0.33},
    )
    motion = MotionParameters.from_clip_row(dataset["test"][0])
    repeats = -(-frames // motion.num_frames)
    fields = {name: torch.cat([getattr(motion, name)] * repeats)[:frames] for name in
              ("identity", "expression", "jaw", "gaze", "pose", "scale", "translation")}
    return MotionParameters(**fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["head2head-synthheads", "head2headfs-synthheads"])
    parser.add_argument("--frames", type=int, default=48, help="frames per timed run")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts to time")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.frames < 1 or args.repeats < 1 or min(args.threads) < 1:
        parser.error("--frames, --repeats and --threads must be at least 1")

    import zoo
    from zoo.reenactment.evaluation import reenactment_speed

    print(f"| model | px | threads | end-to-end fps | x {TARGET_FPS:g} fps target | generator fps | render share |")
    print("|---|---|---|---|---|---|---|")
    motions = {}
    for model_id in args.models:
        model = zoo.load(model_id).eval()
        size = model.image_size
        motion = motions.setdefault(size, driving_motion(args.frames, size))
        for threads in args.threads:
            torch.set_num_threads(threads)
            speed = reenactment_speed(model, motion, repeats=args.repeats)
            total, generator = speed["fps_end_to_end"], speed["fps_generator"]
            render_share = 1.0 - total / generator
            print(f"| {model_id} | {size} | {threads} | {total:.1f} | {total / TARGET_FPS:.2f} | {generator:.1f} | {render_share:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
