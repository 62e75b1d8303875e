"""Building blocks shared by the model families."""

from zoo.nn.convnet import ConvEncoder
from zoo.nn.encoders import build_encoder, encoder_spec
from zoo.nn.memory import EmaTeacher, FifoMemoryBank, linear_momentum
from zoo.nn.mlp import MLPEncoder
from zoo.nn.set_discriminator import (
    SetDiscriminator,
    batch_to_bags,
    discriminator_loss,
    encoder_adversarial_loss,
)

__all__ = [
    "ConvEncoder",
    "EmaTeacher",
    "FifoMemoryBank",
    "MLPEncoder",
    "SetDiscriminator",
    "batch_to_bags",
    "build_encoder",
    "discriminator_loss",
    "encoder_spec",
    "encoder_adversarial_loss",
    "linear_momentum",
]
