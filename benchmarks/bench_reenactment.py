"""Frames per second of the bundled reenactment models at their resolution, on this machine.

    .venv/bin/python benchmarks/bench_reenactment.py
    .venv/bin/python benchmarks/bench_reenactment.py --models head2head-synthheads --frames 96 --threads 1 2

For each model and thread count it drives the model with a SynthHeads clip and times, best of
`--repeats`, (a) the end-to-end step and (b) the generator alone. End to end is, for Head2Head
and Head2HeadFS, the conditioning render of every frame and the sequential generation; for
HeadGAN, the NMFC render of every frame and of the reference, and the generation from one
reference frame; for Free-HeadGAN, the keypoint and gaze estimators on the source and every
driving frame, the sketch drawing and the generation. It prints frames per second and their
ratio to the 25 fps target, and the share of time outside the generator.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

TARGET_FPS = 25.0


def driving_clip(frames: int, image_size: int) -> dict:
    """Motion, frames and audio features of one small SynthHeads clip, repeated to `frames` frames."""
    from zoo.data.synthheads import build_synthheads
    from zoo.reenactment.conditioning import MotionParameters
    from zoo.reenactment.data import to_frames

    dataset = build_synthheads(
        kind="clips", num_identities=3, clips_per_identity=1, num_frames=48, image_size=image_size, conditioning=False,
        flow=False, splits={"train": 0.34, "validation": 0.33, "test": 0.33},
    )
    row = dataset["test"][0]
    motion = MotionParameters.from_clip_row(row)
    repeats = -(-frames // motion.num_frames)
    fields = {name: torch.cat([getattr(motion, name)] * repeats)[:frames] for name in
              ("identity", "expression", "jaw", "gaze", "pose", "scale", "translation")}
    return {
        "motion": MotionParameters(**fields),
        "frames": torch.cat([to_frames(row["frames"])] * repeats)[:frames],
        "audio": torch.cat([torch.as_tensor(row["audio_features"], dtype=torch.float32)] * repeats)[:frames],
    }


def _best(step, repeats: int) -> float:
    import time

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def one_shot_speed(model, clip: dict, repeats: int) -> dict[str, float]:
    """Frames per second of a HeadGAN or Free-HeadGAN end to end and of its generator alone (batches of 16 frames)."""
    from zoo.reenactment.conditioning import render_conditioning
    from zoo.reenactment.one_shot import driving_stack

    frames = clip["frames"]
    count = frames.shape[0]
    if hasattr(model, "gaze_edits"):
        total = _best(lambda: model.animate(frames[:1], frames), repeats)
        sketch = model.animate(frames[:1], frames[:1])["sketch"]
        conditions = (sketch * 2 - 1).expand(count, -1, -1, -1)
        references = (frames[:1] * 2 - 1)[None]
        sketches = (sketch * 2 - 1)[None]

        def generator() -> None:
            for start in range(0, count, 16):
                rows = range(start, min(start + 16, count))
                stack = torch.stack([driving_stack(conditions, t, model.window) for t in rows])
                model.synthesise(references.expand(len(rows), -1, -1, -1, -1), sketches.expand(len(rows), -1, -1, -1, -1), stack)
    else:
        motion, audio = clip["motion"], clip["audio"]
        reference_motion = motion.index(0)
        total = _best(lambda: model.animate(frames[0], reference_motion, motion, audio), repeats)
        nmfc = render_conditioning(model.renderer, motion, kinds=("nmfc",))["nmfc"] * 2 - 1
        reference = frames[:1] * 2 - 1

        def generator() -> None:
            for start in range(0, count, 16):
                rows = list(range(start, min(start + 16, count)))
                stack = torch.stack([driving_stack(nmfc, t, model.window) for t in rows])
                model(reference.expand(len(rows), -1, -1, -1), nmfc[:1].expand(len(rows), -1, -1, -1), stack,
                      audio[rows] if model.audio_dim else None)
    return {"fps_end_to_end": count / total, "fps_generator": count / _best(generator, repeats)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+",
        default=["head2head-synthheads", "head2headfs-synthheads", "headgan-synthheads", "free-headgan-synthheads"],
    )
    parser.add_argument("--frames", type=int, default=48, help="frames per timed run")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch thread counts to time")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.frames < 1 or args.repeats < 1 or min(args.threads) < 1:
        parser.error("--frames, --repeats and --threads must be at least 1")

    import zoo
    from zoo.reenactment.evaluation import reenactment_speed

    print(f"| model | px | threads | end-to-end fps | x {TARGET_FPS:g} fps target | generator fps | share outside the generator |")
    print("|---|---|---|---|---|---|---|")
    clips = {}
    for model_id in args.models:
        model = zoo.load(model_id).eval()
        size = model.image_size
        clip = clips.setdefault(size, driving_clip(args.frames, size))
        for threads in args.threads:
            torch.set_num_threads(threads)
            if hasattr(model, "animate"):
                speed = one_shot_speed(model, clip, args.repeats)
            else:
                speed = reenactment_speed(model, clip["motion"], repeats=args.repeats)
            total, generator = speed["fps_end_to_end"], speed["fps_generator"]
            outside = 1.0 - total / generator
            print(f"| {model_id} | {size} | {threads} | {total:.1f} | {total / TARGET_FPS:.2f} | {generator:.1f} | {outside:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
