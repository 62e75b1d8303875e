"""Appearance parameters of a rendered head: colours, hair style, light and background.

All fields are batched tensors, so one `Appearance` describes a batch of images. Colours are
display RGB values in [0, 1]; the renderer multiplies them by the lighting without gamma
conversion. `sample_appearance` draws every field from a seeded `torch.Generator`, so
the same seed gives the same appearance.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

__all__ = ["Appearance", "BACKGROUND_NOISE_SIZE", "HAIR_STYLE_FIELDS", "sample_appearance"]

BACKGROUND_NOISE_SIZE = 6
# Columns of `Appearance.hair_style`, each in [0, 1].
HAIR_STYLE_FIELDS = ("coverage", "hairline", "fringe", "length", "baldness", "volume")

# Skin tones from light to dark (approximate sRGB of facial skin under white light).
_SKIN_TONES = torch.tensor(
    [[0.97, 0.80, 0.70], [0.92, 0.70, 0.58], [0.82, 0.58, 0.45], [0.70, 0.46, 0.34],
     [0.55, 0.34, 0.24], [0.38, 0.23, 0.16]]
)
_HAIR_COLOURS = torch.tensor(
    [[0.05, 0.04, 0.035], [0.16, 0.10, 0.06], [0.32, 0.20, 0.11], [0.55, 0.40, 0.22],
     [0.80, 0.65, 0.40], [0.55, 0.22, 0.10], [0.62, 0.60, 0.58], [0.85, 0.84, 0.82]]
)
# Hair colour probabilities: mostly dark, fewer blond, red and grey.
_HAIR_WEIGHTS = torch.tensor([0.28, 0.24, 0.16, 0.09, 0.07, 0.05, 0.07, 0.04])
_IRIS_COLOURS = torch.tensor(
    [[0.22, 0.13, 0.07], [0.36, 0.22, 0.10], [0.28, 0.36, 0.20], [0.25, 0.42, 0.58], [0.45, 0.52, 0.58]]
)
_IRIS_WEIGHTS = torch.tensor([0.35, 0.25, 0.12, 0.18, 0.10])


@dataclass
class Appearance:
    """Per-image appearance. B is the batch size.

    Attributes:
        skin: (B, 3) base skin colour.
        lips: (B, 3) lip colour.
        hair: (B, 3) hair colour; eyebrows and lashes are darker shades of it.
        iris: (B, 3) iris colour.
        hair_style: (B, 6) style in [0, 1], columns `HAIR_STYLE_FIELDS`: coverage (0 = shaved,
            1 = full), hairline (0 = low, 1 = high forehead), fringe (hair over the forehead),
            length (0 = short, 1 = over the ears to the jaw), baldness (bald crown and temples),
            volume (how far the hair rises off the scalp).
        stubble: (B,) darkening of the beard area, 0 = none.
        blush: (B,) reddening of cheeks, nose and ears, 0 = none.
        light_direction: (B, 3) unit vector towards the light, in camera coordinates
            (x right, y up, z towards the camera).
        ambient: (B,) ambient light intensity.
        diffuse: (B,) directional light intensity.
        specular: (B,) strength of highlights on eyes, lips and skin.
        light_colour: (B, 3) tint of the light, near white.
        background: (B, 2, 3) the two colours of the background gradient.
        background_direction: (B, 2) unit vector (x right, y down) along which the gradient runs.
        background_noise: (B, 3, N, N) low-frequency colour noise added to the background.
    """

    skin: torch.Tensor
    lips: torch.Tensor
    hair: torch.Tensor
    iris: torch.Tensor
    hair_style: torch.Tensor
    stubble: torch.Tensor
    blush: torch.Tensor
    light_direction: torch.Tensor
    ambient: torch.Tensor
    diffuse: torch.Tensor
    specular: torch.Tensor
    light_colour: torch.Tensor
    background: torch.Tensor
    background_direction: torch.Tensor
    background_noise: torch.Tensor

    def __post_init__(self):
        batch = self.skin.shape[0]
        shapes = {
            "skin": (batch, 3), "lips": (batch, 3), "hair": (batch, 3), "iris": (batch, 3),
            "hair_style": (batch, len(HAIR_STYLE_FIELDS)), "stubble": (batch,), "blush": (batch,),
            "light_direction": (batch, 3), "ambient": (batch,), "diffuse": (batch,), "specular": (batch,),
            "light_colour": (batch, 3), "background": (batch, 2, 3), "background_direction": (batch, 2),
        }
        for name, shape in shapes.items():
            value = getattr(self, name)
            if tuple(value.shape) != shape:
                raise ValueError(f"Appearance.{name} must have shape {shape}, got {tuple(value.shape)}")
        noise = self.background_noise
        if noise.ndim != 4 or noise.shape[:2] != (batch, 3):
            raise ValueError(
                f"Appearance.background_noise must have shape ({batch}, 3, N, N), got {tuple(noise.shape)}"
            )

    @property
    def batch_size(self) -> int:
        return self.skin.shape[0]

    def index(self, items) -> Appearance:
        """Select images by a batch index or slice."""
        return Appearance(**{f.name: getattr(self, f.name)[items] for f in fields(self)})

    def style(self, name: str) -> torch.Tensor:
        """(B,) one column of `hair_style` by name."""
        return self.hair_style[:, HAIR_STYLE_FIELDS.index(name)]


def _mix_palette(palette: torch.Tensor, weights: torch.Tensor, batch: int, generator: torch.Generator) -> torch.Tensor:
    choice = torch.multinomial(weights, batch, replacement=True, generator=generator)
    jitter = (torch.rand(batch, 3, generator=generator) - 0.5) * 0.08
    return (palette[choice] * (1.0 + jitter)).clamp(0.0, 1.0)


def sample_appearance(batch_size: int, generator: torch.Generator) -> Appearance:
    """Draw a batch of appearances from a seeded generator."""
    b = batch_size

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(b, *shape, generator=generator)

    # Skin: interpolate between neighbouring tones, then jitter hue slightly.
    tone = uniform(0.0, len(_SKIN_TONES) - 1.0)
    low = tone.floor().long().clamp(max=len(_SKIN_TONES) - 2)
    frac = (tone - low.float())[:, None]
    skin = _SKIN_TONES[low] * (1 - frac) + _SKIN_TONES[low + 1] * frac
    skin = (skin * (1.0 + (torch.rand(b, 3, generator=generator) - 0.5) * torch.tensor([0.06, 0.05, 0.08]))).clamp(0, 1)
    # Lips: the skin colour shifted towards red and darkened.
    redness = uniform(0.25, 0.55)[:, None]
    lips = (skin * torch.tensor([0.92, 0.62, 0.62]) * (1 - redness) + torch.tensor([0.62, 0.22, 0.24]) * redness)
    lips = lips * uniform(0.8, 1.0)[:, None]

    hair = _mix_palette(_HAIR_COLOURS, _HAIR_WEIGHTS, b, generator)
    iris = _mix_palette(_IRIS_COLOURS, _IRIS_WEIGHTS, b, generator)

    coverage = torch.where(torch.rand(b, generator=generator) < 0.08, uniform(0.0, 0.3), uniform(0.85, 1.0))
    hairline = uniform(0.0, 1.0)
    fringe = torch.where(torch.rand(b, generator=generator) < 0.35, uniform(0.4, 1.0), torch.zeros(b))
    length = torch.where(torch.rand(b, generator=generator) < 0.35, uniform(0.5, 1.0), uniform(0.0, 0.3))
    baldness = torch.where(torch.rand(b, generator=generator) < 0.15, uniform(0.4, 1.0), torch.zeros(b))
    volume = uniform(0.2, 1.0)
    hair_style = torch.stack([coverage, hairline, fringe, length, baldness, volume], dim=1)
    stubble = torch.where(torch.rand(b, generator=generator) < 0.25, uniform(0.1, 0.6), torch.zeros(b))
    blush = uniform(0.0, 0.6)

    # Light from the front hemisphere, mostly from above.
    azimuth = uniform(-1.1, 1.1)
    elevation = uniform(-0.25, 0.9)
    light = torch.stack(
        [torch.sin(azimuth) * torch.cos(elevation), torch.sin(elevation), torch.cos(azimuth) * torch.cos(elevation)],
        dim=1,
    )
    ambient = uniform(0.28, 0.5)
    diffuse = uniform(0.55, 0.85)
    specular = uniform(0.1, 0.45)
    light_colour = 1.0 + (torch.rand(b, 3, generator=generator) - 0.5) * 0.08

    # Backgrounds are mostly muted (a grey level plus a small tint), some more saturated.
    grey = uniform(0.08, 0.9, 2, 1)
    saturation = torch.where(torch.rand(b, 1, 1, generator=generator) < 0.2, 0.5, 0.16)
    background = (grey + (torch.rand(b, 2, 3, generator=generator) - 0.5) * saturation).clamp(0.02, 0.98)
    # Some backgrounds are plain: both gradient ends equal.
    plain = torch.rand(b, generator=generator) < 0.3
    background[plain, 1] = background[plain, 0]
    angle = uniform(0.0, 2 * torch.pi)
    background_direction = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    noise_amount = uniform(0.0, 0.07)[:, None, None, None]
    noise_shape = (b, 3, BACKGROUND_NOISE_SIZE, BACKGROUND_NOISE_SIZE)
    background_noise = torch.randn(noise_shape, generator=generator) * noise_amount

    return Appearance(
        skin=skin, lips=lips, hair=hair, iris=iris, hair_style=hair_style, stubble=stubble, blush=blush,
        light_direction=light, ambient=ambient, diffuse=diffuse, specular=specular, light_colour=light_colour,
        background=background, background_direction=background_direction, background_noise=background_noise,
    )
