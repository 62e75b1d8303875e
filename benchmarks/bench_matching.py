"""Benchmark blockwise caliper matching against scikit-learn's dense pairwise distances.

Both methods solve the same task, RealPatch's bidirectional matching: treated to control,
then control to treated. Each anchor inside the fixed caliper (0.1, 0.9) gets the 1 nearest
neighbour of the other group in Euclidean feature distance, among the candidates within the
std caliper of 0.2 pooled standard deviations. The features are synthetic: N samples,
64 dimensions, two equal groups, L2-normalised float32. The propensity scores come from a
fixed logistic direction, so only matching is timed.

- blockwise: `zoo.matching.match_bidirectional`, queries in blocks of `--block-size`.
- sklearn: what the RealPatch reference code does. It computes the anchor x candidate matrix
  with `sklearn.metrics.pairwise_distances` and a second matrix of propensity gaps, sets
  pairs outside the std caliper to inf and takes the row argmin. When those matrices would
  not fit in `--memory-fraction` of the available memory, the same computation runs on the
  row chunks of `sklearn.metrics.pairwise_distances_chunked`. The argmin takes the first of
  tied minima, where the reference draws one at random.
  `NearestNeighbors(algorithm="brute")` is not used, because it cannot exclude pairs outside
  the std caliper.

Each method runs in a fresh subprocess, and its peak memory is that process's peak resident
set size (VmHWM) minus the peak of a baseline subprocess that only imports the libraries and
builds the features.

Run from the repository root:

    .venv/bin/python benchmarks/bench_matching.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("bench_matching")

FIXED_CALIPER = 0.9
STD_CALIPER = 0.2
METHODS = ("baseline", "blockwise", "sklearn")


# ---------------------------------------------------------------------------------------------
# Worker side: runs in a fresh subprocess per method and size.


def build_problem(
    num_samples: int, dim: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build L2-normalised features, binary groups (alternating) and propensity scores."""
    rng = np.random.default_rng(seed)
    groups = np.arange(num_samples) % 2
    features = rng.standard_normal((num_samples, dim), dtype=np.float32)
    # A group shift on a few dimensions confounds features and group, as matching expects.
    features[:, :8] += 0.3 * groups[:, None].astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    direction = rng.standard_normal(dim).astype(np.float32)
    logits = 3.0 * features @ direction
    scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return features, groups, scores


def peak_rss_kib() -> int:
    """Return this process's peak resident set size in KiB (VmHWM)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    # On Linux ru_maxrss is in KiB as well.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def available_memory_bytes() -> int:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not found in /proc/meminfo")


def run_blockwise(features, groups, scores, block_size: int, seed: int):
    import torch

    from zoo.matching import match_bidirectional

    result = match_bidirectional(
        torch.from_numpy(features),
        torch.from_numpy(scores),
        torch.from_numpy(groups),
        fixed_caliper=FIXED_CALIPER,
        std_caliper=STD_CALIPER,
        block_size=block_size,
        generator=torch.Generator().manual_seed(seed),
    )
    return result.anchor_index.numpy(), result.match_index[:, 0].numpy(), f"blocks of {block_size}"


def _dense_bytes(num_anchors: int, num_candidates: int, itemsize: int) -> int:
    # The feature-distance matrix, the propensity-gap matrix and the boolean mask.
    return num_anchors * num_candidates * (2 * itemsize + 1)


def _sklearn_direction(anchor_features, anchor_scores, candidate_features, candidate_scores, mode):
    from sklearn.metrics import pairwise_distances, pairwise_distances_chunked

    keep = (anchor_scores > 1 - FIXED_CALIPER) & (anchor_scores < FIXED_CALIPER)
    anchor_rows = np.flatnonzero(keep)
    anchor_features = anchor_features[keep]
    anchor_scores = anchor_scores[keep]
    pooled_std = np.sqrt((np.var(anchor_scores) + np.var(candidate_scores)) / 2)
    threshold = STD_CALIPER * pooled_std

    if mode == "dense":
        distances = pairwise_distances(anchor_features, candidate_features, metric="euclidean")
        gaps = pairwise_distances(anchor_scores[:, None], candidate_scores[:, None])
        distances[gaps > threshold] = np.inf
        nearest = distances.argmin(axis=1)
        matched = np.isfinite(distances[np.arange(len(nearest)), nearest])
        return anchor_rows[matched], nearest[matched]

    def reduce_chunk(chunk: np.ndarray, start: int):
        chunk_scores = anchor_scores[start : start + chunk.shape[0], None]
        chunk[np.abs(chunk_scores - candidate_scores[None, :]) > threshold] = np.inf
        nearest = chunk.argmin(axis=1)
        return nearest, np.isfinite(chunk[np.arange(chunk.shape[0]), nearest])

    nearest_parts, matched_parts = [], []
    for nearest, matched in pairwise_distances_chunked(
        anchor_features, candidate_features, reduce_func=reduce_chunk, metric="euclidean"
    ):
        nearest_parts.append(nearest)
        matched_parts.append(matched)
    nearest = np.concatenate(nearest_parts)
    matched = np.concatenate(matched_parts)
    return anchor_rows[matched], nearest[matched]


def run_sklearn(features, groups, scores, requested_mode: str, memory_fraction: float):
    treated = np.flatnonzero(groups == 1)
    control = np.flatnonzero(groups == 0)
    in_caliper = (scores > 1 - FIXED_CALIPER) & (scores < FIXED_CALIPER)
    dense_bytes = max(
        _dense_bytes(int(in_caliper[treated].sum()), len(control), features.itemsize),
        _dense_bytes(int(in_caliper[control].sum()), len(treated), features.itemsize),
    )
    budget = memory_fraction * available_memory_bytes()
    mode = requested_mode
    if mode == "auto":
        mode = "dense" if dense_bytes <= budget else "chunked"
    logger.info(
        "sklearn: dense matrices need %.2f GiB, budget %.2f GiB, using %s",
        dense_bytes / 2**30,
        budget / 2**30,
        mode,
    )

    anchors, matches = [], []
    for anchor_set, candidate_set in ((treated, control), (control, treated)):
        anchor_rows, nearest = _sklearn_direction(
            features[anchor_set],
            scores[anchor_set],
            features[candidate_set],
            scores[candidate_set],
            mode,
        )
        anchors.append(anchor_set[anchor_rows])
        matches.append(candidate_set[nearest])

    description = "dense pairwise_distances" if mode == "dense" else "pairwise_distances_chunked"
    description += f" ({dense_bytes / 2**30:.1f} GiB dense)"
    return np.concatenate(anchors), np.concatenate(matches), description


def worker_main(args: argparse.Namespace) -> None:
    # Every worker imports the same libraries, so the baseline subtracts their memory too.
    import sklearn.metrics  # noqa: F401
    import torch
    from threadpoolctl import threadpool_info

    import zoo.matching  # noqa: F401

    features, groups, scores = build_problem(args.worker_size, args.dim, args.seed)

    record: dict = {"method": args.worker}
    if args.worker != "baseline":
        start = time.perf_counter()
        if args.worker == "blockwise":
            anchors, matches, description = run_blockwise(
                features, groups, scores, args.block_size, args.seed
            )
        else:
            anchors, matches, description = run_sklearn(
                features, groups, scores, args.sklearn_mode, args.memory_fraction
            )
        record["time_s"] = time.perf_counter() - start
        record["description"] = description
        record["num_matched"] = int(len(anchors))
        np.savez(args.output, anchors=anchors, matches=matches)

    record["peak_rss_kib"] = peak_rss_kib()
    record["torch_threads"] = torch.get_num_threads()
    record["blas_threads"] = sorted({pool["num_threads"] for pool in threadpool_info()})
    print(json.dumps(record), flush=True)


# ---------------------------------------------------------------------------------------------
# Parent side: launches the workers and prints the table.


def run_worker(method: str, size: int, args: argparse.Namespace, output: Path) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker", method,
        "--worker-size", str(size),
        "--output", str(output),
        "--dim", str(args.dim),
        "--seed", str(args.seed),
        "--block-size", str(args.block_size),
        "--sklearn-mode", args.sklearn_mode,
        "--memory-fraction", str(args.memory_fraction),
    ]
    completed = subprocess.run(
        command, stdout=subprocess.PIPE, text=True, timeout=args.timeout, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{method} worker for N={size} failed with exit code {completed.returncode}; "
            f"its error output is above"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def agreement(first: Path, second: Path) -> tuple[float, int, int]:
    """Return the share of common anchors with the same match, and each side's anchor count."""
    pairs = []
    for path in (first, second):
        with np.load(path) as data:
            pairs.append(dict(zip(data["anchors"].tolist(), data["matches"].tolist())))
    common = set(pairs[0]) & set(pairs[1])
    same = sum(pairs[0][anchor] == pairs[1][anchor] for anchor in common)
    return same / max(len(common), 1), len(pairs[0]), len(pairs[1])


def format_table(rows: list[dict]) -> str:
    lines = [
        "| N | method | distance computation | time (s) | peak memory (MiB) | matched anchors |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['size']:,} | {row['method']} | {row['description']} | {row['time_s']:.2f} "
            f"| {row['peak_mib']:.0f} | {row['num_matched']:,} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        help="numbers of samples N, both groups together",
    )
    parser.add_argument("--dim", type=int, default=64, help="feature dimension")
    parser.add_argument(
        "--block-size", type=int, default=4096, help="queries per block of the blockwise matcher"
    )
    parser.add_argument(
        "--sklearn-mode",
        choices=("auto", "dense", "chunked"),
        default="auto",
        help="dense matrices, row chunks, or auto: dense when they fit in --memory-fraction",
    )
    parser.add_argument(
        "--memory-fraction",
        type=float,
        default=0.5,
        help="share of MemAvailable the dense sklearn matrices may use in auto mode",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the synthetic data and of tie-breaking"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="time limit per worker process, in seconds"
    )
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    if args.worker:
        worker_main(args)
        return

    from tqdm import tqdm

    import torch

    logger.info(
        "%s, %d CPUs, torch %s, load average %s",
        platform.platform(),
        os.cpu_count(),
        torch.__version__,
        ", ".join(f"{load:.1f}" for load in os.getloadavg()),
    )
    rows = []
    agreements = []
    with tempfile.TemporaryDirectory() as scratch:
        steps = [(size, method) for size in args.sizes for method in METHODS]
        records: dict[tuple[int, str], dict] = {}
        with tqdm(steps, desc="matching benchmark", unit="run") as progress:
            for size, method in progress:
                progress.set_postfix_str(f"N={size:,} {method}")
                output = Path(scratch) / f"{method}-{size}.npz"
                record = run_worker(method, size, args, output)
                records[size, method] = record
                logger.info("N=%d %s: %s", size, method, json.dumps(record))

        for size in args.sizes:
            baseline_kib = records[size, "baseline"]["peak_rss_kib"]
            for method in ("blockwise", "sklearn"):
                record = records[size, method]
                rows.append(
                    {
                        "size": size,
                        "method": method,
                        "description": record["description"],
                        "time_s": record["time_s"],
                        "peak_mib": (record["peak_rss_kib"] - baseline_kib) / 1024,
                        "num_matched": record["num_matched"],
                    }
                )
            share, blockwise_count, sklearn_count = agreement(
                Path(scratch) / f"blockwise-{size}.npz", Path(scratch) / f"sklearn-{size}.npz"
            )
            agreements.append((size, share, blockwise_count, sklearn_count))

    threads = records[args.sizes[0], "blockwise"]
    print()
    print(
        f"Machine: {os.cpu_count()} CPUs, torch {torch.__version__}, torch threads "
        f"{threads['torch_threads']}, BLAS threads {threads['blas_threads']}, "
        f"load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(
        f"Task: bidirectional 1-NN, fixed caliper ({1 - FIXED_CALIPER:.1f}, {FIXED_CALIPER}), "
        f"std caliper {STD_CALIPER}, dim {args.dim}"
    )
    print("Peak memory: subprocess VmHWM minus that of a subprocess that only builds the features.")
    print()
    print(format_table(rows))
    print()
    print(
        "| N | time sklearn / blockwise | peak memory sklearn / blockwise "
        "| same match on common anchors |"
    )
    print("|---:|---:|---:|---:|")
    rows_by_key = {(row["size"], row["method"]): row for row in rows}
    for size, share, blockwise_count, sklearn_count in agreements:
        blockwise_row = rows_by_key[size, "blockwise"]
        sklearn_row = rows_by_key[size, "sklearn"]
        time_ratio = sklearn_row["time_s"] / blockwise_row["time_s"]
        memory_ratio = sklearn_row["peak_mib"] / max(blockwise_row["peak_mib"], 1e-9)
        print(
            f"| {size:,} | {time_ratio:.2f} | {memory_ratio:.2f} | {share:.4%} "
            f"({blockwise_count:,} vs {sklearn_count:,} anchors) |"
        )


if __name__ == "__main__":
    main()
