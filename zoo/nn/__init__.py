"""Building blocks shared by the model families."""

from zoo.nn.convnet import ConvEncoder

__all__ = ["ConvEncoder"]
