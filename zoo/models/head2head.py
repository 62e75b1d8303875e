"""Head2Head and Head2HeadFS: video head reenactment with a sequential generator.

Head2Head (Koujan, Doukas, Roussos and Zafeiriou, FG 2020; Head2Head++, Doukas et al., arXiv
2006.10199) renders a target person driven by the head pose, expression and eye gaze of a
source video. Each output frame is generated from a window of conditioning renders (the
normalised mean face coordinate image, NMFC, and an eye image) and the previously generated
frames, through two encoders whose features are summed (`zoo.nn.generators.SequentialGenerator`).
One model is trained per target person. Training adds image, mouth and dynamics discriminators
(`training/train_head2head.py`); the checkpoint contains the generator only.

Head2HeadFS (Doukas, Koujan, Sharmanska and Zafeiriou, arXiv 2103.16229) trains the same
generator on many people, conditioned also on a dense shape image, and adapts it to a new
person from a few frames (`Head2HeadFS.adapt`). The paper's adaptation schedule could not be
read; ours is documented on `adapt`.

Reenactment (`reenact`) takes the driving motion, gives it the target's identity and camera
statistics (`zoo.reenactment.transfer.transfer_motion`), renders the conditioning images with the
package's own morphable head and generates the frames in order. Driving motion is either
morphable-model parameters (a SynthHeads clip row or a dict of them) or video frames, which a
fitter (DAD-3DNet, `dad3dnet-synthheads` by default) turns into parameters.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.hub import ZooModel
from zoo.nn.generators import SequentialGenerator
from zoo.reenactment.conditioning import (
    CONDITION_KINDS,
    MotionParameters,
    builtin_renderer,
    conditioning_channels,
    render_conditioning,
    stack_conditioning,
)
from zoo.reenactment.data import to_images
from zoo.reenactment.transfer import CameraStatistics, camera_statistics, transfer_motion
from zoo.reenactment.evaluation import FITTER_ID

__all__ = ["Head2Head", "Head2HeadFS", "motion_from_inputs"]

# Cross-identity evaluation: driving clips per split, and frames of each.
EVALUATION_DRIVERS = 4
EVALUATION_DRIVER_FRAMES = 24
# Head2HeadFS evaluation: frames of a new person it adapts to (K), and adaptation steps.
SHOT_COUNTS = (0, 1, 8, 32)
PRIMARY_SHOTS = 8
ADAPTATION_STEPS = 100
# Identity coefficients of the built-in SynthHeads head.
NUM_IDENTITY = 32
# Fields of a driving-motion mapping, as `MotionParameters` names them.
MOTION_FIELDS = ("identity", "expression", "jaw", "gaze", "pose", "scale", "translation")


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(kinds)
    unknown = [kind for kind in kinds if kind not in CONDITION_KINDS]
    if not kinds or unknown:
        raise ValueError(f"condition_kinds must name kinds from {CONDITION_KINDS}, got {list(kinds)}")
    return kinds


def motion_from_inputs(driving: Any, *, fitter: Any = None, frames: int | None = None) -> MotionParameters:
    """Turn a driving input into `MotionParameters`.

    Accepted inputs:

    - `MotionParameters`;
    - a SynthHeads clip row (a mapping with ``identity_coefficients`` and ``expression_parameters``);
    - a mapping of the `MotionParameters` fields (lists or arrays, T frames each);
    - a path to a ``.npz`` of those fields, read without unpickling;
    - a sequence of video frames (paths, PIL images or arrays). A DAD-3DNet `fitter` (the bundled
      one when None) fits them frame by frame. Fitted motion has no gaze, so the eyes look ahead.
    """
    if isinstance(driving, MotionParameters):
        motion = driving
    elif isinstance(driving, (str, Path)) and str(driving).endswith(".npz"):
        motion = _motion_from_npz(Path(driving))
    elif isinstance(driving, Mapping):
        if "identity_coefficients" in driving:
            motion = MotionParameters.from_clip_row(driving)
        else:
            motion = _motion_from_mapping(driving, "the driving mapping")
    elif isinstance(driving, Sequence) and not isinstance(driving, (str, bytes)):
        motion = fit_motion(driving, fitter=fitter)
    else:
        raise TypeError(
            f"cannot read driving motion from {type(driving).__name__}; pass a SynthHeads clip row, a mapping "
            f"or .npz of {list(MOTION_FIELDS)}, or a list of video frames"
        )
    if frames is not None:
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"max_frames must be a positive integer or None, got {frames!r}")
        motion = motion.index(slice(0, frames))
    return motion


def _motion_from_npz(path: Path) -> MotionParameters:
    """Read driving motion from a .npz of numeric arrays, never unpickling."""
    import zipfile

    if not path.is_file():
        raise FileNotFoundError(f"driving motion file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a .npz archive; save the motion fields with numpy.savez")
    values = {}
    with np.load(path, allow_pickle=False) as archive:
        for name in archive.files:
            try:
                values[name] = archive[name]
            except ValueError as error:
                raise ValueError(
                    f"field {name!r} of {path} cannot be read without unpickling ({error}); save numeric arrays with numpy.savez"
                ) from error
    return _motion_from_mapping(values, str(path))


def _motion_from_mapping(values: Mapping[str, Any], source: str) -> MotionParameters:
    missing = [name for name in MOTION_FIELDS if name not in values]
    if missing:
        raise ValueError(f"{source} lacks the motion fields {missing}; it needs {list(MOTION_FIELDS)}")
    unknown = sorted(set(values) - set(MOTION_FIELDS))
    if unknown:
        raise ValueError(f"{source} has unknown motion fields {unknown}; expected {list(MOTION_FIELDS)}")
    tensors = {}
    for name in MOTION_FIELDS:
        try:
            array = np.asarray(values[name], dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: field {name!r} must contain numbers ({error})") from error
        if not np.isfinite(array).all():
            raise ValueError(f"{source}: field {name!r} contains NaN or infinite values")
        tensors[name] = torch.from_numpy(array)
    if tensors["identity"].ndim == 1:
        tensors["identity"] = tensors["identity"].expand(tensors["pose"].shape[0], -1).clone()
    if tensors["identity"].shape[-1] != NUM_IDENTITY:
        raise ValueError(
            f"{source}: field 'identity' has {tensors['identity'].shape[-1]} coefficients; the built-in head needs {NUM_IDENTITY}"
        )
    return MotionParameters(**tensors)


@torch.no_grad()
def fit_motion(frames: Sequence[Any], *, fitter: Any = None) -> MotionParameters:
    """Fit the morphable head to each frame with a DAD-3DNet; gaze is set to look ahead."""
    if len(frames) == 0:
        raise ValueError("the driving video has no frames")
    if fitter is None:
        import zoo

        fitter = zoo.load(FITTER_ID)
    fits = fitter.predict(list(frames))
    names = list(fits[0]["expression"])
    expression = torch.tensor([[fit["expression"][name] for name in names] for fit in fits], dtype=torch.float32)
    return MotionParameters(
        identity=torch.tensor([fit["identity"] for fit in fits], dtype=torch.float32),
        expression=expression,
        jaw=torch.tensor([fit["jaw"] for fit in fits], dtype=torch.float32),
        gaze=torch.zeros(len(fits), 2),
        pose=torch.tensor([[fit["pose"][axis] for axis in ("yaw", "pitch", "roll")] for fit in fits], dtype=torch.float32),
        scale=torch.tensor([fit["scale"] for fit in fits], dtype=torch.float32),
        translation=torch.tensor([fit["translation"] for fit in fits], dtype=torch.float32),
    )


class Head2Head(ZooModel, pipeline_tag="image-to-video", tags=["head-reenactment", "video-synthesis", "gan"]):
    """A person-specific video reenactment generator.

    Args:
        image_size: side of the square frames it generates.
        condition_kinds: conditioning images per frame (``nmfc`` and ``eyes`` for Head2Head).
        window: conditioning frames per generated frame (the current one and those before it).
        previous_frames: previously generated frames fed back (0 disables the second encoder).
        base_channels, downsamplings, encoder_blocks, decoder_blocks, max_channels: generator
            widths and depths (`SequentialGenerator`).
        fps: frame rate of the training videos, reported with generated videos.
        data: description of the training data (SynthHeads clips config and target person).
        training: training provenance (seed, config) for cards.

    Buffers saved with the weights: ``target_identity`` (the target person's identity
    coefficients) and ``target_camera`` (mean and standard deviation of the target's camera scale
    and translation), which reenactment gives to the driving motion.
    """

    default_kinds: tuple[str, ...] = ("nmfc", "eyes")
    # `zoo predict` passes all inputs as one driving video and writes the generated one to a file.
    video_output = True

    def __init__(
        self,
        *,
        image_size: int = 64,
        condition_kinds: Sequence[str] | None = None,
        window: int = 3,
        previous_frames: int = 2,
        base_channels: int = 32,
        downsamplings: int = 2,
        encoder_blocks: int = 3,
        decoder_blocks: int = 3,
        max_channels: int = 256,
        num_identity: int = 32,
        fps: float = 25.0,
        data: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size < 16 or image_size % (2 ** downsamplings):
            raise ValueError(f"image_size must be an integer of at least 16 divisible by {2 ** downsamplings}, got {image_size!r}")
        if window < 1 or previous_frames < 0:
            raise ValueError(f"window must be at least 1 and previous_frames at least 0, got {window} and {previous_frames}")
        self.image_size = image_size
        self.condition_kinds = _check_kinds(self.default_kinds if condition_kinds is None else condition_kinds)
        self.window = int(window)
        self.previous_frames = int(previous_frames)
        self.fps = float(fps)
        self.condition_channels = conditioning_channels(self.condition_kinds)
        self.generator = SequentialGenerator(
            condition_channels=self.window * self.condition_channels,
            previous_frames=self.previous_frames,
            base_channels=base_channels,
            downsamplings=downsamplings,
            encoder_blocks=encoder_blocks,
            decoder_blocks=decoder_blocks,
            max_channels=max_channels,
        )
        self.register_buffer("target_identity", torch.zeros(num_identity))
        # scale mean, scale std, translation mean (x, y), translation std (x, y)
        self.register_buffer("target_camera", torch.tensor([1.0 / 15.0, 1e-3, 0.0, 0.0, 1e-3, 1e-3]))

    # ------------------------------------------------------------------ target person

    def set_target(self, identity: torch.Tensor, statistics: CameraStatistics) -> None:
        """Record the target person's identity coefficients and camera statistics."""
        identity = torch.as_tensor(identity, dtype=torch.float32).reshape(-1)
        if identity.shape != self.target_identity.shape:
            raise ValueError(f"identity must have {self.target_identity.numel()} coefficients, got {identity.numel()}")
        self.target_identity.copy_(identity)
        self.target_camera.copy_(torch.tensor([
            float(statistics.scale_mean), float(statistics.scale_std),
            *(float(v) for v in torch.as_tensor(statistics.translation_mean).reshape(2)),
            *(float(v) for v in torch.as_tensor(statistics.translation_std).reshape(2)),
        ]))

    @property
    def target_statistics(self) -> CameraStatistics:
        values = self.target_camera.detach().cpu()
        return CameraStatistics(
            scale_mean=values[0].clone(), scale_std=values[1].clone(),
            translation_mean=values[2:4].clone(), translation_std=values[4:6].clone(),
        )

    @property
    def renderer(self):
        """The `HeadRenderer` of the built-in SynthHeads head at this model's resolution."""
        return builtin_renderer(self.image_size)

    # ------------------------------------------------------------------ generation

    def forward(self, conditions: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """Generate one frame per batch item: conditions (B, window * C, H, W), previous (B, P * 3, H, W); output in [-1, 1]."""
        return self.generator(conditions, previous)

    def window_conditions(self, conditioning: torch.Tensor, t: int) -> torch.Tensor:
        """Return (B, window * C, H, W): frames t - window + 1 .. t of (B, T, C, H, W), the first frame repeated before 0."""
        rows = [max(0, index) for index in range(t - self.window + 1, t + 1)]
        batch, _, channels, height, width = conditioning.shape
        return conditioning[:, rows].reshape(batch, self.window * channels, height, width)

    def rollout(self, conditioning: torch.Tensor, *, history: int = 0, detach_previous: bool = True, network=None) -> torch.Tensor:
        """Generate a clip frame by frame, feeding back the previous outputs.

        Args:
            conditioning: (B, history + L, C, H, W) in [-1, 1]; the first `history` frames only
                fill the first windows.
            history: leading conditioning frames not to generate.
            detach_previous: stop gradients through fed-back frames (the released training does).
            network: the module to call per frame, ``network(conditions, previous)``; the
                Accelerate-wrapped model in distributed training, so that its gradients are
                synchronised. None calls the generator directly.

        Returns:
            (B, L, 3, H, W) frames in [-1, 1]; the first frame starts from zero previous frames.
        """
        if conditioning.ndim != 5 or conditioning.shape[2] != self.condition_channels:
            raise ValueError(
                f"conditioning must be (batch, frames, {self.condition_channels}, height, width), got {tuple(conditioning.shape)}"
            )
        batch, total, _, height, width = conditioning.shape
        previous = conditioning.new_zeros(batch, 3 * self.previous_frames, height, width) if self.previous_frames else None
        outputs = []
        network = network if network is not None else self.generator
        for t in range(history, total):
            frame = network(self.window_conditions(conditioning, t), previous)
            outputs.append(frame)
            if previous is not None:
                fed = frame.detach() if detach_previous else frame
                previous = torch.cat([previous[:, 3:], fed], dim=1)
        return torch.stack(outputs, dim=1)

    def conditioning_for(self, motion: MotionParameters) -> dict[str, torch.Tensor]:
        """Render the conditioning images (and mask, landmarks) of each frame of `motion`."""
        return render_conditioning(self.renderer, motion, kinds=self.condition_kinds)

    @torch.no_grad()
    def generate(self, motion: MotionParameters) -> dict[str, torch.Tensor]:
        """Render conditioning for `motion` as it is (no transfer) and generate its frames.

        Returns ``frames`` (T, 3, H, W) in [0, 1] and the rendered ``conditioning`` images.
        """
        was_training = self.training
        self.eval()
        rendered = self.conditioning_for(motion)
        stacked = stack_conditioning(rendered, self.condition_kinds).to(self.target_camera.device)
        frames = self.rollout(stacked[None])[0]
        self.train(was_training)
        return {"frames": ((frames + 1.0) / 2.0).clamp(0.0, 1.0).cpu(), "conditioning": rendered}

    def transfer(self, driving: MotionParameters, *, smoothing: int = 15, adapt_camera: bool = True) -> MotionParameters:
        """Give driving motion the target's identity, and its camera re-normalised to the target's statistics."""
        target = self.target_statistics
        if not adapt_camera:
            source = camera_statistics(driving)
            return transfer_motion(driving, self.target_identity.cpu(), source, source_statistics=source, smoothing=1, clip_sigma=None)
        return transfer_motion(driving, self.target_identity.cpu(), target, smoothing=smoothing)

    @torch.no_grad()
    def reenact(self, driving: Any, *, fitter: Any = None, smoothing: int = 15, adapt_camera: bool = True,
                max_frames: int | None = None) -> dict[str, Any]:
        """Drive the target person with a driving input (see `motion_from_inputs`).

        Returns ``frames`` (T, 3, H, W) in [0, 1], the transferred ``motion`` and the rendered
        ``conditioning`` images.
        """
        driving_motion = motion_from_inputs(driving, fitter=fitter, frames=max_frames)
        motion = self.transfer(driving_motion, smoothing=smoothing, adapt_camera=adapt_camera)
        result = self.generate(motion)
        result["motion"] = motion
        return result

    # ------------------------------------------------------------------ evaluation

    summary_keys = (
        "psnr", "ssim", "masked_l1", "temporal_warp_error", "pose_transfer_error_degrees", "expression_transfer_error",
        "fps_end_to_end",
    )

    def target_clips(self, dataset) -> list:
        """Load the clips of the person this model was trained on (``data.target`` of its config)."""
        from zoo.reenactment.data import load_clips

        target = (self.config.get("data") or {}).get("target") or {}
        split = target.get("split", "train")
        if split not in dataset:
            raise ValueError(f"the target's split {split!r} is not in the dataset; available splits: {sorted(dataset)}")
        people = sorted({int(person) for person in dataset[split]["identity"]})
        return load_clips(dataset[split], self.renderer, self.condition_kinds, [people[int(target.get("index", 0))]])

    def evaluate_split(self, dataset, split: str, batch_size: int = 0) -> dict[str, Any]:
        """Score self-reenactment on the target's held-out frames and cross-identity reenactment driven by `split`'s people.

        `batch_size` is unused: frames are generated one at a time, in order.
        """
        from zoo.reenactment.data import load_clips

        clips = self.target_clips(dataset)
        drivers = load_clips(dataset[split], self.renderer, self.condition_kinds)[:EVALUATION_DRIVERS]
        return self._scores(clips, drivers)

    def _scores(self, clips: list, drivers: list) -> dict[str, Any]:
        import zoo
        from zoo.reenactment.evaluation import cross_reenactment, reenactment_speed, self_reenactment

        own = self_reenactment(self, clips)
        cross = cross_reenactment(self, drivers, zoo.load(FITTER_ID), max_frames=EVALUATION_DRIVER_FRAMES)
        speed = reenactment_speed(self, clips[0].motion)
        return {
            "psnr": own["psnr"],
            "ssim": own["ssim"],
            "masked_l1": own["masked_l1"],
            "temporal_warp_error": own["temporal_warp_error"],
            "temporal_warp_error_real": own["temporal_warp_error_real"],
            "pose_transfer_error_degrees": cross["transferred"]["pose_error_degrees"],
            "expression_transfer_error": cross["transferred"]["expression_error"],
            "fps_end_to_end": speed["fps_end_to_end"],
            "fps_generator": speed["fps_generator"],
            "self_reenactment": {key: value for key, value in own.items() if key != "per_clip"},
            "cross_reenactment": cross,
            "speed": speed,
        }

    def evaluation_extras(self, dataset, split: str = "test") -> dict[str, Any]:
        """Score the nearest-training-frame baseline on the same held-out frames."""
        from zoo.reenactment.evaluation import nearest_frame_baseline

        return {"baselines": {"nearest-training-frame": {"split": "held-out", "metrics": nearest_frame_baseline(self.target_clips(dataset))}}}

    def predict(self, driving: Any, *, fitter: Any = None, output: str | Path | None = None,
                max_frames: int | None = 250) -> dict[str, Any]:
        """Reenact the target person from driving motion or a driving video; return JSON-able results.

        Args:
            driving: see `motion_from_inputs`.
            fitter: the DAD-3DNet that fits driving video frames (the bundled one when None).
            output: write the generated video there as an animated GIF (or a PNG strip when the
                name ends in .png) and return its path instead of the frames.
            max_frames: generate at most this many frames (None for all); ``driving_frames`` in
                the result gives the length of the driving input.

        Returns:
            ``num_frames``, ``driving_frames``, ``fps``, ``image_size``, per-frame transferred
            ``pose`` (yaw, pitch, roll in radians), and ``frames`` (T x H x W x 3 uint8 nested
            lists) or ``output``.
        """
        if output is not None and Path(output).suffix.lower() not in (".gif", ".png"):
            raise ValueError(f"cannot write video to {Path(output).name}; use a .gif or .png name")
        driving_motion = motion_from_inputs(driving, fitter=fitter)
        result = self.reenact(driving_motion, max_frames=max_frames)
        frames = to_images(result["frames"])
        report: dict[str, Any] = {
            "num_frames": int(frames.shape[0]),
            "driving_frames": driving_motion.num_frames,
            "fps": self.fps,
            "image_size": self.image_size,
            "pose": result["motion"].pose.tolist(),
        }
        if output is None:
            report["frames"] = frames.tolist()
        else:
            report["output"] = str(write_video(frames, output, fps=self.fps))
        return report


def write_video(frames: np.ndarray, path: str | Path, *, fps: float = 25.0) -> Path:
    """Write (T, H, W, 3) uint8 frames as an animated GIF, or as a horizontal PNG strip for a .png path."""
    from PIL import Image

    path = Path(path)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be a (T, H, W, 3) uint8 array, got {frames.shape} {frames.dtype}")
    images = [Image.fromarray(frame) for frame in frames]
    if path.suffix.lower() == ".png":
        strip = Image.new("RGB", (frames.shape[2] * len(images), frames.shape[1]))
        for index, image in enumerate(images):
            strip.paste(image, (index * frames.shape[2], 0))
        strip.save(path)
    elif path.suffix.lower() == ".gif":
        images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, round(1000.0 / fps)), loop=0)
    else:
        raise ValueError(f"cannot write video to {path.name}; use a .gif or .png name")
    return path


class Head2HeadFS(Head2Head, tags=["head-reenactment", "video-synthesis", "gan", "few-shot"]):
    """A generic reenactment generator that adapts to a new person from a few frames.

    The generator is Head2Head's, conditioned on NMFC, eye and dense shape images (the
    surface normals of the posed head, which carry the person's face shape) and trained on
    many people. `adapt` fine-tunes it on K frames of a new person.
    """

    default_kinds = ("nmfc", "eyes", "shape")

    @property
    def generic(self) -> bool:
        """Whether the model is still the generic one (no `adapt` yet): its target identity is all zeros."""
        return not bool(self.target_identity.abs().sum())

    def adapt(
        self,
        frames: Any,
        motion: Any = None,
        *,
        steps: int = 100,
        lr: float = 1e-4,
        batch_size: int = 4,
        fitter: Any = None,
        seed: int = 0,
        progress: bool = False,
    ) -> dict[str, float]:
        """Fine-tune on K frames of a new person and make that person the target.

        Args:
            frames: K consecutive frames of the person: a (K, 3, H, W) tensor in [0, 1], or images
                (paths, PIL images, arrays) at the model's resolution.
            motion: the frames' `MotionParameters` (or anything `motion_from_inputs` reads);
                fitted with `fitter` when None.
            steps: optimiser steps (Adam, `lr`), each on `batch_size` frames drawn with replacement.
            seed: seed of the frame draws.

        The loss is the offline reconstruction loss of training (`PyramidLoss`, multi-scale L1 and
        SSIM) on the face and background. Each frame is generated from its true predecessors among
        the K frames (zeros before the first), the teacher-forced form of the rollout: with K = 1
        the model learns the person from one still.

        Returns the mean loss over the first and last tenth of the steps.
        """
        from zoo.losses.perceptual import PyramidLoss
        from zoo.reenactment.data import to_frames

        if isinstance(frames, torch.Tensor):
            images = frames.detach().float().cpu()
        else:
            if len(frames) == 0:
                raise ValueError("adapt needs at least one frame of the new person, got none")
            images = to_frames([_as_image(frame, self.image_size) for frame in frames])
        if images.ndim != 4 or images.shape[0] == 0 or images.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(f"frames must be (K, 3, {self.image_size}, {self.image_size}) with K >= 1, got {tuple(images.shape)}")
        if not torch.isfinite(images).all():
            raise ValueError("frames contain NaN or infinite values; pass finite images in [0, 1]")
        if images.min() < 0 or images.max() > 1:
            raise ValueError(
                f"frame tensors must contain values in [0, 1], got [{float(images.min()):g}, {float(images.max()):g}]; "
                "divide 8-bit images by 255"
            )
        if steps < 1 or batch_size < 1:
            raise ValueError(f"steps and batch_size must be at least 1, got {steps} and {batch_size}")
        count = images.shape[0]
        if motion is None:
            motion = fit_motion(list(to_images(images)), fitter=fitter)
        motion = motion_from_inputs(motion)
        if motion.num_frames != count:
            raise ValueError(
                f"{count} frames but motion for {motion.num_frames} frames; pass the motion of those frames, "
                f"e.g. motion.index(slice(0, {count}))"
            )
        self.set_target(motion.identity.mean(dim=0), camera_statistics(motion))

        device = self.target_camera.device
        conditioning = stack_conditioning(self.conditioning_for(motion), self.condition_kinds).to(device)
        targets = (images * 2.0 - 1.0).to(device)
        loss_fn = PyramidLoss().to(device)
        optimizer = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999))
        generator = torch.Generator().manual_seed(seed)
        was_training = self.training
        self.train()
        losses = []
        iterator = range(steps)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc=f"adapting on {count} frames")
        # Adaptation may be called under torch.no_grad(), as `zoo eval` scores models.
        with torch.enable_grad():
            for _ in iterator:
                picks = torch.randint(count, (batch_size,), generator=generator).tolist()
                conditions = torch.cat([self.window_conditions(conditioning[None], t) for t in picks])
                previous = None
                if self.previous_frames:
                    previous = torch.cat([
                        torch.cat([targets[t - k][None] if t - k >= 0 else torch.zeros_like(targets[:1])
                                   for k in range(self.previous_frames, 0, -1)], dim=1)
                        for t in picks
                    ])
                loss = loss_fn(self.generator(conditions, previous), targets[picks])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
        self.train(was_training)
        tenth = max(1, steps // 10)
        return {"first_loss": float(np.mean(losses[:tenth])), "last_loss": float(np.mean(losses[-tenth:]))}

    def adapted(self, frames: Any, motion: Any = None, **kwargs: Any) -> Head2HeadFS:
        """Return an adapted copy, leaving this generic model unchanged; its `adapt` losses are in ``adaptation_losses``."""
        clone = copy.deepcopy(self)
        clone.adaptation_losses = clone.adapt(frames, motion, **kwargs)
        return clone


    def _shots(self, clips: list, shots: int) -> Head2HeadFS:
        """Return this model adapted on the first `shots` frames of the person's first clip (itself for 0 shots).

        The frames must come before the clip's held-out last third, which self-reenactment scores.
        """
        from zoo.reenactment.data import held_out_start

        if shots == 0:
            return self
        first = clips[0]
        training_frames = held_out_start(first.num_frames)
        if shots > training_frames:
            raise ValueError(
                f"{shots} shots exceed the {training_frames} frames before the held-out last third "
                f"of a {first.num_frames}-frame clip; use at most {training_frames} shots"
            )
        return self.adapted(first.frames[:shots], first.motion.index(slice(0, shots)), steps=ADAPTATION_STEPS)

    def _people_clips(self, dataset, split: str) -> dict[int, list]:
        from zoo.reenactment.data import load_clips

        clips = load_clips(dataset[split], self.renderer, self.condition_kinds)
        people: dict[int, list] = {}
        for clip in clips:
            people.setdefault(clip.identity, []).append(clip)
        return people

    def evaluate_split(self, dataset, split: str, batch_size: int = 0) -> dict[str, Any]:
        """Adapt to each of `split`'s people on K = 8 frames of their first clip, then score as Head2Head.

        Self-reenactment uses the held-out last third of that first clip, whose first two thirds
        give the K frames: other clips of a SynthHeads person have another light and background,
        which the conditioning does not show. Cross-identity reenactment drives the adapted
        model with the next person's first clip. Metrics are means over people.
        """
        people = self._people_clips(dataset, split)
        names = sorted(people)
        per_person = []
        for index, person in enumerate(names):
            adapted = self._shots(people[person], PRIMARY_SHOTS)
            driver = people[names[(index + 1) % len(names)]][0]
            per_person.append(adapted._scores(people[person][:1], [driver]))
        keys = [key for key in per_person[0] if isinstance(per_person[0][key], float)]
        result = {key: float(np.mean([entry[key] for entry in per_person])) for key in keys}
        result.update({"shots": PRIMARY_SHOTS, "adaptation_steps": ADAPTATION_STEPS, "people": names, "per_person": per_person})
        return result

    def evaluation_extras(self, dataset, split: str = "test") -> dict[str, Any]:
        """Self-reenactment quality of `split`'s people against the number of adaptation frames K."""
        from zoo.reenactment.evaluation import self_reenactment

        people = self._people_clips(dataset, split)
        curve = {}
        for shots in SHOT_COUNTS:
            scores = [self_reenactment(self._shots(clips, shots), clips[:1]) for clips in people.values()]
            curve[str(shots)] = {
                name: float(np.mean([score[name] for score in scores])) for name in ("psnr", "ssim", "masked_l1", "temporal_warp_error")
            }
        return {"few_shot": {"split": split, "adaptation_steps": ADAPTATION_STEPS, "people": sorted(people), "shots": curve}}


def _as_image(frame: Any, size: int):
    from zoo.data.images import check_image, to_pil

    image = check_image(to_pil(frame), "RGB", "a frame")
    if image.size != (size, size):
        raise ValueError(
            f"a frame is {image.size[0]}x{image.size[1]} px; this model needs {size}x{size} head crops, "
            "so crop or resize the face first"
        )
    return image
