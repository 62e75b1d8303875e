"""Building blocks shared by the model families."""

from zoo.nn.convnet import ConvEncoder
from zoo.nn.discriminators import (
    MultiScaleDiscriminator,
    PatchDiscriminator,
    TemporalDiscriminator,
    crop_roi,
    mouth_centres,
    roi_size,
    temporal_windows,
)
from zoo.nn.encoders import build_encoder, encoder_spec
from zoo.nn.generators import ResnetBlock, SequentialGenerator
from zoo.nn.memory import EmaTeacher, FifoMemoryBank, linear_momentum
from zoo.nn.mlp import MLPEncoder
from zoo.nn.set_discriminator import (
    SetDiscriminator,
    batch_to_bags,
    discriminator_loss,
    encoder_adversarial_loss,
)
from zoo.nn.spade import SPADE, AdaIN, AdaINResBlock, SPADEResBlock, init_xavier
from zoo.nn.warp import compose_flows, warp

__all__ = [
    "AdaIN",
    "AdaINResBlock",
    "ConvEncoder",
    "EmaTeacher",
    "FifoMemoryBank",
    "MLPEncoder",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "ResnetBlock",
    "SPADE",
    "SPADEResBlock",
    "SequentialGenerator",
    "SetDiscriminator",
    "TemporalDiscriminator",
    "batch_to_bags",
    "build_encoder",
    "compose_flows",
    "crop_roi",
    "discriminator_loss",
    "encoder_adversarial_loss",
    "encoder_spec",
    "init_xavier",
    "linear_momentum",
    "mouth_centres",
    "roi_size",
    "temporal_windows",
    "warp",
]
