"""SynthHeads: procedural, seeded labels, motion and speech for the embedded face dataset."""

from zoo.data.synthheads import audio, labels, motion

__all__ = ["audio", "labels", "motion"]
