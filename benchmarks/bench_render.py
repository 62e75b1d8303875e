"""Frames per second of the SynthHeads head renderer on one CPU core.

Each frame is the full set of images the face families train on: RGB, NMFC, mask, depth,
landmark sketch and eye image, plus the posed mesh (`MorphableHeadModel.vertices`) they are
rendered from. Identity, expression, jaw, gaze, pose and appearance are drawn at random per
frame from a fixed seed before timing starts.

The script pins PyTorch, OpenMP and OpenCV to one thread, so the numbers are per core. With
`--compare-opencv` it also times the triangle-index pass alone twice in the same run: the
vectorised z-buffer used by the renderer, and a painter's-algorithm baseline that fills each
triangle with `cv2.fillConvexPoly` in back-to-front order, one image at a time.

    .venv/bin/python benchmarks/bench_render.py --sizes 64 128 --frames 2048 --compare-opencv
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from zoo.geometry import Camera, HeadRenderer, MorphableHeadModel, sample_appearance  # noqa: E402
from zoo.geometry.camera import project, to_pixels  # noqa: E402
from zoo.geometry.raster import rasterize  # noqa: E402


def draw_parameters(model: MorphableHeadModel, frames: int, seed: int):
    """Random parameters for `frames` frames: varied identities, expressions and poses."""
    generator = torch.Generator().manual_seed(seed)
    identity = model.sample_identity(frames, generator)
    active = torch.rand(frames, model.num_expression, generator=generator) < 0.3
    expression = torch.rand(frames, model.num_expression, generator=generator) * active
    jaw = torch.rand(frames, generator=generator) * 0.25
    gaze = (torch.rand(frames, 2, generator=generator) - 0.5) * 0.6
    rotation = (torch.rand(frames, 3, generator=generator) - 0.5) * torch.tensor([1.4, 0.6, 0.4])
    scale = 0.065 + 0.015 * torch.rand(frames, generator=generator)
    translation = (torch.rand(frames, 2, generator=generator) - 0.5) * 0.1
    appearance = sample_appearance(frames, generator)
    return identity, expression, jaw, gaze, Camera(scale, rotation, translation), appearance


def time_renderer(model, size, batch, params, frames) -> float:
    """Seconds to render `frames` frames with every output, in batches of `batch`."""
    renderer = HeadRenderer(model, size)
    identity, expression, jaw, gaze, camera, appearance = params

    def render(start, stop):
        items = slice(start, stop)
        renderer.render_parameters(
            camera.index(items), appearance.index(items), identity[items], expression[items], jaw[items], gaze[items]
        )

    render(0, min(batch, frames))  # warm-up: allocator and first-call overheads
    begin = time.perf_counter()
    with tqdm(total=frames, desc=f"render {size}px", unit="frame", file=sys.stderr) as bar:
        for start in range(0, frames, batch):
            stop = min(start + batch, frames)
            render(start, stop)
            bar.update(stop - start)
    return time.perf_counter() - begin


def screen_vertices(model, size, params, frames) -> torch.Tensor:
    identity, expression, jaw, gaze, camera, _ = params
    vertices = model.vertices(identity[:frames], expression[:frames], jaw[:frames], gaze[:frames])
    return to_pixels(project(vertices, camera.index(slice(0, frames))), size, size)


def time_zbuffer(model, size, batch, screen) -> float:
    faces = model.faces
    half = size / 2
    rasterize(screen[:batch], faces, size, size, depth_range=(-4 * half, 4 * half))
    begin = time.perf_counter()
    for start in tqdm(range(0, screen.shape[0], batch), desc=f"z-buffer {size}px", unit="batch", file=sys.stderr):
        rasterize(screen[start : start + batch], faces, size, size, depth_range=(-4 * half, 4 * half))
    return time.perf_counter() - begin


def painter_opencv(screen: np.ndarray, faces: np.ndarray, size: int) -> np.ndarray:
    """Triangle-index image by the painter's algorithm: back-to-front `cv2.fillConvexPoly`."""
    corners = screen[faces]  # (F, 3, 3)
    edge1 = corners[:, 1, :2] - corners[:, 0, :2]
    edge2 = corners[:, 2, :2] - corners[:, 0, :2]
    front = (edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]) < 0
    order = np.flatnonzero(front)
    order = order[np.argsort(corners[order, :, 2].mean(axis=1))]  # farthest first
    # OpenCV samples pixel centres at integer coordinates, so the corners shift by half a pixel.
    # Four fractional bits keep sub-pixel precision.
    polygons = np.round((corners[:, :, :2] - 0.5) * 16).astype(np.int32)
    image = np.zeros((size, size, 3), dtype=np.uint8)
    for face in order:
        ident = face + 1
        colour = (int(ident & 255), int((ident >> 8) & 255), int((ident >> 16) & 255))
        cv2.fillConvexPoly(image, polygons[face], colour, cv2.LINE_8, 4)
    channels = image.astype(np.int32)
    return channels[..., 0] + (channels[..., 1] << 8) + (channels[..., 2] << 16) - 1


def time_painter(model, size, screen) -> float:
    faces = model.faces.numpy()
    frames = screen.numpy().astype(np.float64)
    painter_opencv(frames[0], faces, size)
    begin = time.perf_counter()
    for frame in tqdm(frames, desc=f"painter {size}px", unit="frame", file=sys.stderr):
        painter_opencv(frame, faces, size)
    return time.perf_counter() - begin


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="image sizes in pixels")
    parser.add_argument("--frames", type=int, default=1024, help="frames rendered per size")
    parser.add_argument("--batch", type=int, default=64, help="frames per render call")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random parameters")
    parser.add_argument("--compare-opencv", action="store_true", help="also time the OpenCV painter's baseline")
    parser.add_argument("--compare-frames", type=int, default=256, help="frames for the raster-only comparison")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    model = MorphableHeadModel.builtin()
    params = draw_parameters(model, max(args.frames, args.compare_frames), args.seed)

    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, opencv {cv2.__version__}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"Model: {model.num_vertices} vertices, {model.faces.shape[0]} faces; batch {args.batch}")
    print()
    print("| size | frames | seconds | frames/s per core |")
    print("|---:|---:|---:|---:|")
    for size in args.sizes:
        seconds = time_renderer(model, size, args.batch, params, args.frames)
        print(f"| {size} | {args.frames} | {seconds:.2f} | {args.frames / seconds:.0f} |", flush=True)

    if args.compare_opencv:
        print()
        print("Triangle-index pass only (same frames, same run):")
        print()
        print("| size | z-buffer frames/s | OpenCV painter frames/s | z-buffer / painter |")
        print("|---:|---:|---:|---:|")
        for size in args.sizes:
            screen = screen_vertices(model, size, params, args.compare_frames)
            zbuffer = args.compare_frames / time_zbuffer(model, size, args.batch, screen)
            painter = args.compare_frames / time_painter(model, size, screen)
            print(f"| {size} | {zbuffer:.0f} | {painter:.0f} | {zbuffer / painter:.2f} |", flush=True)
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
