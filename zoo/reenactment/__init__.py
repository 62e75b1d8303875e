"""Video head reenactment: conditioning images and motion transfer for Head2Head-style generators.

Every name in `__all__` can be imported from `zoo.reenactment` directly:

- `zoo.reenactment.conditioning`: per-frame morphable-model motion (`MotionParameters`) and its
  conditioning images, NMFC, eye image, shape (surface-normal) image, mask and landmark sketch
  (`render_conditioning`, `stack_conditioning`, `conditioning_channels`, `shape_image`).
- `zoo.reenactment.transfer`: the reenactment step that puts the source's expression, gaze and
  rotation on the target person and re-expresses the camera framing in the target's statistics
  (`transfer_motion`, `camera_statistics`, `CameraStatistics`, `moving_average`).
- `zoo.reenactment.keypoints`: morphable-model-free keypoint pose (`apply_pose`, `canonicalise`),
  gaze vectors and the gaze-coded keypoint sketch (`keypoint_sketch`, `decode_sketch_gaze`).

The clip tensors, the adversarial clip trainer and the evaluation live in
`zoo.reenactment.data`, `zoo.reenactment.trainer` and `zoo.reenactment.evaluation`.
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
from zoo.reenactment.keypoints import (
    angular_error_degrees,
    apply_pose,
    canonicalise,
    decode_sketch_gaze,
    gaze_angles,
    gaze_colours,
    gaze_vector,
    keypoint_sketch,
)
from zoo.reenactment.transfer import CameraStatistics, camera_statistics, moving_average, transfer_motion

__all__ = [
    "CONDITION_CHANNELS",
    "CONDITION_KINDS",
    "CameraStatistics",
    "MotionParameters",
    "angular_error_degrees",
    "apply_pose",
    "camera_statistics",
    "canonicalise",
    "conditioning_channels",
    "decode_sketch_gaze",
    "gaze_angles",
    "gaze_colours",
    "gaze_vector",
    "keypoint_sketch",
    "moving_average",
    "render_conditioning",
    "shape_image",
    "stack_conditioning",
    "transfer_motion",
]
