"""Geometry for synthetic faces: a morphable head model, a camera and a batched CPU renderer."""

from zoo.geometry.appearance import Appearance, sample_appearance
from zoo.geometry.bases import EXPRESSION_NAMES, IDENTITY_NAMES
from zoo.geometry.build import REGION_NAMES
from zoo.geometry.camera import Camera, euler_to_matrix, matrix_to_euler, project, to_pixels
from zoo.geometry.morphable import MorphableHeadModel, MorphableModelFormatError
from zoo.geometry.raster import Fragments, rasterize
from zoo.geometry.render import ALL_OUTPUTS, HeadRenderer, render_background

__all__ = [
    "ALL_OUTPUTS",
    "EXPRESSION_NAMES",
    "IDENTITY_NAMES",
    "REGION_NAMES",
    "Appearance",
    "Camera",
    "Fragments",
    "HeadRenderer",
    "MorphableHeadModel",
    "MorphableModelFormatError",
    "euler_to_matrix",
    "matrix_to_euler",
    "project",
    "rasterize",
    "render_background",
    "sample_appearance",
    "to_pixels",
]
