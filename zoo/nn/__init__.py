"""Building blocks shared by the model families."""

from zoo.nn.convnet import ConvEncoder
from zoo.nn.memory import EmaTeacher, FifoMemoryBank, linear_momentum

__all__ = ["ConvEncoder", "EmaTeacher", "FifoMemoryBank", "linear_momentum"]
