"""Dataset builders, adapters and input preparation shared by every model family."""

from zoo.data.description import DatasetDescription, describe

__all__ = ["DatasetDescription", "describe"]
