"""SynthHeads: procedural, seeded labels, motion, speech, renders and flow for the embedded face dataset."""

from zoo.data.synthheads import audio, labels, motion
from zoo.data.synthheads.dataset import SynthHeadsConfig, build_synthheads, config_of

__all__ = ["SynthHeadsConfig", "audio", "build_synthheads", "config_of", "labels", "motion"]
