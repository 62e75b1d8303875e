"""Video head reenactment: conditioning images and motion transfer for Head2Head-style generators.

Every name in `__all__` can be imported from `zoo.reenactment` directly:

- `zoo.reenactment.conditioning`: per-frame morphable-model motion (`MotionParameters`) and its
  conditioning images, NMFC, eye image, shape (surface-normal) image, mask and landmark sketch
  (`render_conditioning`, `stack_conditioning`, `conditioning_channels`, `shape_image`).
- `zoo.reenactment.transfer`: the reenactment step that puts the source's expression, gaze and
  rotation on the target person and re-expresses the camera framing in the target's statistics
  (`transfer_motion`, `camera_statistics`, `CameraStatistics`, `moving_average`).
"""

from zoo.reenactment.conditioning import (
    CONDITION_CHANNELS,
    CONDITION_KINDS,
    MotionParameters,
    conditioning_channels,
    render_conditioning,
    shape_image,
    stack_conditioning,
)
from zoo.reenactment.transfer import CameraStatistics, camera_statistics, moving_average, transfer_motion

__all__ = [
    "CONDITION_CHANNELS",
    "CONDITION_KINDS",
    "CameraStatistics",
    "MotionParameters",
    "camera_statistics",
    "conditioning_channels",
    "moving_average",
    "render_conditioning",
    "shape_image",
    "stack_conditioning",
    "transfer_motion",
]
