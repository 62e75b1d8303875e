"""Synthetic speech-like audio for SynthHeads clips, its frame-rate envelope and per-frame features.

The waveform is a source-filter sketch of speech, not intelligible speech. A harmonic source
with a wandering pitch is shaped by three formant resonances whose frequencies glide from vowel
to vowel. Its loudness follows syllables at 4-6 per second, grouped into phrases separated by
pauses, and short noise bursts mark some syllable onsets like consonants. The envelope,
resampled to the video frame rate, drives the mouth in `zoo.data.synthheads.motion`, so the
audio and the lips carry the same signal.

Per-frame features replace the audio input of HeadGAN (Doukas, Zafeiriou and Sharmanska, ICCV
2021). HeadGAN used 21 pyAudioAnalysis short-term features (8 time and spectral statistics and
13 MFCCs) and their deltas, each summarised by its mean and standard deviation over 8 video
frames, plus DeepSpeech character tokens. Here the same kinds of statistics are computed in PyTorch, and the
DeepSpeech block is left out because it needs a pretrained speech recogniser.

Timing convention: video frame i shows time i / fps seconds. A clip of T frames lasts T / fps
seconds and contains round(T * sample_rate / fps) audio samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from zoo.data.synthheads.labels import as_generator

__all__ = [
    "AUDIO_FEATURE_DIM",
    "SHORT_TERM_FEATURE_NAMES",
    "SpeechConfig",
    "audio_features",
    "frame_envelope",
    "num_audio_samples",
    "sample_speech_track",
    "synthesize_speech",
]

DEFAULT_SAMPLE_RATE = 16_000
DEFAULT_FPS = 25.0

# Typical adult formant frequencies (F1, F2, F3) in Hz of five vowels, roughly /i/, /e/, /a/,
# /o/ and /u/. Each speaker scales them by `formant_scale_range`, because shorter vocal tracts
# raise every formant.
VOWEL_FORMANTS_HZ = np.array(
    [
        [280.0, 2250.0, 2900.0],
        [500.0, 1850.0, 2500.0],
        [730.0, 1100.0, 2450.0],
        [550.0, 850.0, 2400.0],
        [320.0, 850.0, 2250.0],
    ]
)
FORMANT_BANDWIDTHS_HZ = np.array([120.0, 150.0, 200.0])
# Higher formants are weaker in voiced speech.
FORMANT_GAINS = np.array([1.0, 0.5, 0.25])

# Short-term analysis frames of 25 ms every 10 ms, the usual speech front-end setting.
SHORT_TERM_WINDOW_S = 0.025
SHORT_TERM_HOP_S = 0.010
NUM_MEL_BANDS = 40
NUM_MFCC = 13
# Sub-blocks of a frame (energy entropy) and sub-bands of its spectrum (spectral entropy).
NUM_ENTROPY_BLOCKS = 10
ROLLOFF_FRACTION = 0.9
# Mid-term window in video frames over which the short-term features are averaged, as in HeadGAN.
CONTEXT_FRAMES = 8

SHORT_TERM_FEATURE_NAMES: tuple[str, ...] = (
    "zero_crossing_rate",
    "log_energy",
    "energy_entropy",
    "spectral_centroid",
    "spectral_spread",
    "spectral_entropy",
    "spectral_flux",
    "spectral_rolloff",
) + tuple(f"mfcc_{index}" for index in range(NUM_MFCC))

# Short-term features and their deltas, each summarised by a mean and a standard deviation.
AUDIO_FEATURE_DIM = 4 * len(SHORT_TERM_FEATURE_NAMES)

_EPS = 1e-10


@dataclass(frozen=True)
class SpeechConfig:
    """Parameters of the synthetic speech.

    Args:
        syllable_rate_range: range of the speaker's syllable rate in Hz.
        syllables_per_phrase: inclusive range of the number of syllables between pauses.
        pause_range_s: range of pause lengths between phrases in seconds.
        leading_silence_range_s: range of the silence before the first syllable in seconds.
        pitch_range_hz: range of the speaker's mean fundamental frequency.
        pitch_wander: relative depth of the slow pitch variation around that mean.
        formant_scale_range: range of the speaker's factor on every formant frequency.
        consonant_probability: probability that a syllable starts with a noise burst.
        consonant_level: level of the noise bursts relative to the vowel.
        peak_amplitude: peak absolute sample value of the waveform.
    """

    syllable_rate_range: tuple[float, float] = (4.0, 6.0)
    syllables_per_phrase: tuple[int, int] = (3, 8)
    pause_range_s: tuple[float, float] = (0.15, 0.6)
    leading_silence_range_s: tuple[float, float] = (0.0, 0.3)
    pitch_range_hz: tuple[float, float] = (90.0, 220.0)
    pitch_wander: float = 0.12
    formant_scale_range: tuple[float, float] = (1.0, 1.2)
    consonant_probability: float = 0.6
    consonant_level: float = 0.3
    peak_amplitude: float = 0.9

    def __post_init__(self) -> None:
        positive_ranges = {
            "syllable_rate_range": self.syllable_rate_range,
            "pitch_range_hz": self.pitch_range_hz,
            "formant_scale_range": self.formant_scale_range,
        }
        non_negative_ranges = {"pause_range_s": self.pause_range_s, "leading_silence_range_s": self.leading_silence_range_s}
        for name, (low, high) in positive_ranges.items():
            if not 0 < low <= high:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(low, high)}")
        for name, (low, high) in non_negative_ranges.items():
            if not 0 <= low <= high:
                raise ValueError(f"{name} must satisfy 0 <= low <= high, got {(low, high)}")
        low, high = self.syllables_per_phrase
        if not 1 <= low <= high:
            raise ValueError(f"syllables_per_phrase must satisfy 1 <= low <= high, got {self.syllables_per_phrase}")
        if not 0 <= self.pitch_wander < 1:
            raise ValueError(f"pitch_wander must be in [0, 1), got {self.pitch_wander}")
        if not 0 <= self.consonant_probability <= 1:
            raise ValueError(f"consonant_probability must be in [0, 1], got {self.consonant_probability}")
        if self.consonant_level < 0:
            raise ValueError(f"consonant_level must be >= 0, got {self.consonant_level}")
        if not 0 < self.peak_amplitude <= 1:
            raise ValueError(f"peak_amplitude must be in (0, 1], got {self.peak_amplitude}")


def _check_sample_rate(sample_rate: int) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1000:
        raise ValueError(f"sample_rate must be an integer of at least 1000 Hz, got {sample_rate!r}")


def _check_fps(fps: float) -> None:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not 0 < fps < math.inf:
        raise ValueError(f"fps must be a positive finite number, got {fps!r}")


def _check_rates(sample_rate: int, fps: float) -> None:
    _check_sample_rate(sample_rate)
    _check_fps(fps)


def _check_num_frames(num_frames: int) -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")


def num_audio_samples(num_frames: int, fps: float = DEFAULT_FPS, sample_rate: int = DEFAULT_SAMPLE_RATE) -> int:
    """Return the number of audio samples that cover `num_frames` video frames."""
    _check_num_frames(num_frames)
    _check_rates(sample_rate, fps)
    return int(round(num_frames * sample_rate / fps))


# Synthesis --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Syllable:
    start: float
    end: float
    amplitude: float
    vowel: int
    consonant: bool


def _syllable_timeline(rng: np.random.Generator, duration: float, config: SpeechConfig) -> list[_Syllable]:
    rate = rng.uniform(*config.syllable_rate_range)
    syllables: list[_Syllable] = []
    time = rng.uniform(*config.leading_silence_range_s)
    while time < duration:
        low, high = config.syllables_per_phrase
        for _ in range(int(rng.integers(low, high + 1))):
            length = rng.uniform(0.75, 1.25) / rate
            syllables.append(
                _Syllable(
                    start=time,
                    end=time + length,
                    amplitude=rng.uniform(0.5, 1.0),
                    vowel=int(rng.integers(len(VOWEL_FORMANTS_HZ))),
                    consonant=bool(rng.random() < config.consonant_probability),
                )
            )
            time += length
        time += rng.uniform(*config.pause_range_s)
    return syllables


def _smooth_wander(rng: np.random.Generator, times: np.ndarray, frequency_range: tuple[float, float]) -> np.ndarray:
    """Return a smooth signal in [-1, 1]: a convex mix of three sinusoids with random phases."""
    frequencies = rng.uniform(*frequency_range, size=3)
    phases = rng.uniform(0.0, 2.0 * math.pi, size=3)
    weights = rng.dirichlet(np.ones(3))
    return np.sum(weights[:, None] * np.sin(2.0 * math.pi * frequencies[:, None] * times[None, :] + phases[:, None]), axis=0)


def _moving_rms(signal: np.ndarray, window: int) -> np.ndarray:
    """Return the RMS of `signal` over a centred window of `window` samples (truncated at the ends)."""
    squares = np.concatenate([[0.0], np.cumsum(signal.astype(np.float64) ** 2)])
    index = np.arange(signal.shape[0])
    low = np.clip(index - window // 2, 0, signal.shape[0])
    high = np.clip(index + window - window // 2, 0, signal.shape[0])
    return np.sqrt((squares[high] - squares[low]) / np.maximum(high - low, 1))


def synthesize_speech(
    rng: np.random.Generator | int,
    num_samples: int,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    config: SpeechConfig | None = None,
) -> np.ndarray:
    """Synthesise a speech-like waveform of `num_samples` samples (float32, peak `peak_amplitude`).

    Args:
        rng: a numpy Generator (advanced in place) or an integer seed.
        num_samples: length of the waveform, >= 1.
        sample_rate: samples per second.
        config: synthesis parameters. None uses `SpeechConfig()`.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    _check_sample_rate(sample_rate)
    config = config or SpeechConfig()
    rng = as_generator(rng)

    times = np.arange(num_samples) / sample_rate
    duration = num_samples / sample_rate
    mean_pitch = rng.uniform(*config.pitch_range_hz)
    formant_scale = rng.uniform(*config.formant_scale_range)
    syllables = _syllable_timeline(rng, duration, config)
    pitch = mean_pitch * (1.0 + config.pitch_wander * _smooth_wander(rng, times, (0.3, 3.0)))
    noise = rng.standard_normal(num_samples)

    # Syllable loudness: a raised-cosine hump per syllable. Formants glide linearly between
    # the vowel targets placed at syllable centres.
    envelope = np.zeros(num_samples)
    bursts = np.zeros(num_samples)
    for syllable in syllables:
        length = syllable.end - syllable.start
        inside = slice(*np.searchsorted(times, [syllable.start, syllable.end]))
        envelope[inside] += syllable.amplitude * np.sin(math.pi * (times[inside] - syllable.start) / length) ** 2
        if syllable.consonant:
            # A noise burst over the first quarter of the syllable.
            burst = slice(*np.searchsorted(times, [syllable.start, syllable.start + 0.25 * length]))
            bursts[burst] += syllable.amplitude * np.sin(math.pi * (times[burst] - syllable.start) / (0.25 * length)) ** 2
    if syllables:
        centres = np.array([(syllable.start + syllable.end) / 2 for syllable in syllables])
        targets = VOWEL_FORMANTS_HZ[[syllable.vowel for syllable in syllables]] * formant_scale
        formants = np.stack([np.interp(times, centres, targets[:, index]) for index in range(3)])
    else:
        formants = np.repeat(VOWEL_FORMANTS_HZ[2][:, None] * formant_scale, num_samples, axis=1)

    # Additive harmonic source: harmonic k at k * f0 with a 1/k source roll-off, weighted by the
    # formant resonances at its own frequency. That applies a time-varying filter without
    # filter state, and harmonics above 0.45 * sample_rate are dropped to avoid aliasing.
    phase = 2.0 * math.pi * np.cumsum(pitch) / sample_rate
    voiced = np.zeros(num_samples)
    max_harmonic = int(0.45 * sample_rate / pitch.min())
    for harmonic in range(1, max_harmonic + 1):
        frequency = harmonic * pitch
        gain = np.sum(
            FORMANT_GAINS[:, None]
            / (1.0 + ((frequency[None, :] - formants) / (FORMANT_BANDWIDTHS_HZ[:, None] / 2.0)) ** 2),
            axis=0,
        )
        voiced += np.where(frequency < 0.45 * sample_rate, gain / harmonic, 0.0) * np.sin(harmonic * phase)

    # Flatten the loudness changes caused by harmonics crossing formants, so the waveform's
    # envelope is the syllable envelope.
    voiced /= _moving_rms(voiced, max(int(0.02 * sample_rate), 1)) + _EPS
    fricative = np.diff(noise, prepend=0.0)  # first difference: a high-pass tilt like frication
    fricative /= fricative.std() + _EPS
    waveform = envelope * voiced + config.consonant_level * bursts * fricative

    peak = np.abs(waveform).max()
    if peak > 0:
        waveform *= config.peak_amplitude / peak
    return waveform.astype(np.float32)


def frame_envelope(
    waveform: np.ndarray,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    fps: float = DEFAULT_FPS,
    num_frames: int | None = None,
) -> np.ndarray:
    """Return the amplitude envelope at the video frame rate, (T,) float32 in [0, 1].

    Frame i gets the RMS of the samples within half a frame period of time i / fps, divided by
    the clip's largest frame RMS (an all-silent clip gives zeros). `num_frames` defaults to
    the number of frames the waveform covers.
    """
    _check_rates(sample_rate, fps)
    waveform = np.asarray(waveform, dtype=np.float64)
    if waveform.ndim != 1 or waveform.shape[0] == 0:
        raise ValueError(f"waveform must be a non-empty 1-D array, got shape {waveform.shape}")
    if num_frames is None:
        num_frames = max(int(round(waveform.shape[0] * fps / sample_rate)), 1)
    _check_num_frames(num_frames)

    squares = np.concatenate([[0.0], np.cumsum(waveform**2)])
    centres = np.arange(num_frames) * sample_rate / fps
    half = 0.5 * sample_rate / fps
    low = np.clip(np.round(centres - half).astype(np.int64), 0, waveform.shape[0])
    high = np.clip(np.round(centres + half).astype(np.int64), 0, waveform.shape[0])
    rms = np.sqrt((squares[high] - squares[low]) / np.maximum(high - low, 1))
    peak = rms.max()
    return (rms / peak if peak > 0 else rms).astype(np.float32)


def sample_speech_track(
    rng: np.random.Generator | int,
    num_frames: int,
    *,
    fps: float = DEFAULT_FPS,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    config: SpeechConfig | None = None,
) -> dict[str, np.ndarray]:
    """Synthesise the speech of a clip of `num_frames` video frames.

    Returns:
        A dict with `waveform` (num_audio_samples(T),) float32 and `envelope` (T,) float32 in
        [0, 1], the frame-rate envelope that drives the mouth.
    """
    num_samples = num_audio_samples(num_frames, fps, sample_rate)
    waveform = synthesize_speech(rng, num_samples, sample_rate=sample_rate, config=config)
    envelope = frame_envelope(waveform, sample_rate=sample_rate, fps=fps, num_frames=num_frames)
    return {"waveform": waveform, "envelope": envelope}


# Features ---------------------------------------------------------------------------------------


def _mel_filterbank(num_bands: int, num_bins: int, sample_rate: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Return (num_bins, num_bands) triangular filters equally spaced on the HTK mel scale."""

    def to_mel(hz: torch.Tensor) -> torch.Tensor:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    def to_hz(mel: torch.Tensor) -> torch.Tensor:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    bins = torch.linspace(0.0, sample_rate / 2, num_bins, dtype=torch.float64)
    edges = to_hz(torch.linspace(0.0, float(to_mel(torch.tensor(sample_rate / 2.0))), num_bands + 2, dtype=torch.float64))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(dtype=dtype, device=device)


def _dct_matrix(num_inputs: int, num_outputs: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Return the (num_inputs, num_outputs) orthonormal DCT-II basis used for MFCCs."""
    n = torch.arange(num_inputs, dtype=torch.float64)[:, None]
    k = torch.arange(num_outputs, dtype=torch.float64)[None, :]
    basis = torch.cos(math.pi / num_inputs * (n + 0.5) * k) * math.sqrt(2.0 / num_inputs)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.to(dtype=dtype, device=device)


def _entropy(weights: torch.Tensor) -> torch.Tensor:
    """Return the base-2 entropy of non-negative weights over the last axis, normalised to sum 1."""
    probabilities = weights / (weights.sum(dim=-1, keepdim=True) + _EPS)
    return -(probabilities * torch.log2(probabilities + _EPS)).sum(dim=-1)


def _short_term_features(frames: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Return (..., K, 21) features of windowed-out frames (..., K, window)."""
    window_length = frames.shape[-1]
    num_fft = 1 << (window_length - 1).bit_length()
    nyquist = sample_rate / 2

    zero_crossing_rate = (torch.diff(torch.sign(frames), dim=-1).abs() > 0).to(frames.dtype).mean(dim=-1)
    energy = (frames**2).mean(dim=-1)
    log_energy = torch.log(energy + _EPS)
    block_length = window_length // NUM_ENTROPY_BLOCKS
    blocks = frames[..., : block_length * NUM_ENTROPY_BLOCKS].unflatten(-1, (NUM_ENTROPY_BLOCKS, block_length))
    energy_entropy = _entropy((blocks**2).sum(dim=-1))

    window = torch.hann_window(window_length, periodic=False, dtype=frames.dtype, device=frames.device)
    magnitude = torch.fft.rfft(frames * window, n=num_fft).abs()  # (..., K, num_fft // 2 + 1)
    power = magnitude**2
    frequencies = torch.linspace(0.0, nyquist, magnitude.shape[-1], dtype=frames.dtype, device=frames.device)

    total = magnitude.sum(dim=-1) + _EPS
    centroid = (magnitude * frequencies).sum(dim=-1) / total
    spread = torch.sqrt((magnitude * (frequencies - centroid[..., None]) ** 2).sum(dim=-1) / total)
    band_length = power.shape[-1] // NUM_ENTROPY_BLOCKS
    bands = power[..., : band_length * NUM_ENTROPY_BLOCKS].unflatten(-1, (NUM_ENTROPY_BLOCKS, band_length))
    spectral_entropy = _entropy(bands.sum(dim=-1))
    normalised = magnitude / total[..., None]
    flux = torch.zeros_like(total)
    flux[..., 1:] = ((normalised[..., 1:, :] - normalised[..., :-1, :]) ** 2).sum(dim=-1)
    cumulative = torch.cumsum(power, dim=-1)
    rolloff_bin = (cumulative < ROLLOFF_FRACTION * cumulative[..., -1:]).sum(dim=-1).clamp(max=power.shape[-1] - 1)
    rolloff = frequencies[rolloff_bin]

    mel = power @ _mel_filterbank(NUM_MEL_BANDS, power.shape[-1], sample_rate, frames.dtype, frames.device)
    mfcc = torch.log(mel + _EPS) @ _dct_matrix(NUM_MEL_BANDS, NUM_MFCC, frames.dtype, frames.device)

    statistics = torch.stack(
        [
            zero_crossing_rate,
            log_energy,
            energy_entropy,
            centroid / nyquist,
            spread / nyquist,
            spectral_entropy,
            flux,
            rolloff / nyquist,
        ],
        dim=-1,
    )
    return torch.cat([statistics, mfcc], dim=-1)


def audio_features(
    waveform: np.ndarray | torch.Tensor,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    fps: float = DEFAULT_FPS,
    num_frames: int | None = None,
    context_frames: int = CONTEXT_FRAMES,
) -> torch.Tensor:
    """Compute per-video-frame audio features, (T, 84) or (B, T, 84) float32.

    Short-term features (`SHORT_TERM_FEATURE_NAMES`: 8 time and spectral statistics and 13
    MFCCs from 40 mel bands) are taken on 25 ms Hann windows every 10 ms, and their deltas are
    differences to the previous short-term frame. For video frame i, the mean and the standard
    deviation of those 42 values are taken over the short-term frames centred within
    `context_frames / fps` seconds around time i / fps. The output is [means, standard
    deviations], and windows at the clip edges are truncated.

    Args:
        waveform: (S,) or (B, S) samples, NumPy or tensor. Tensors keep their device.
        sample_rate: samples per second.
        fps: video frames per second.
        num_frames: number of video frames T. None uses the number of frames the waveform covers.
        context_frames: width of the averaging window in video frames, >= 1.
    """
    _check_rates(sample_rate, fps)
    signal = torch.as_tensor(waveform).to(torch.float32)
    if signal.ndim not in (1, 2) or signal.shape[-1] == 0:
        raise ValueError(f"waveform must have shape (samples,) or (batch, samples), got {tuple(signal.shape)}")
    if isinstance(context_frames, bool) or not isinstance(context_frames, int) or context_frames < 1:
        raise ValueError(f"context_frames must be a positive integer, got {context_frames!r}")
    num_samples = signal.shape[-1]
    if num_frames is None:
        num_frames = max(int(round(num_samples * fps / sample_rate)), 1)
    _check_num_frames(num_frames)

    # Short-term frame k is centred on sample k * hop, like torch.stft with center=True.
    window_length = int(round(SHORT_TERM_WINDOW_S * sample_rate))
    hop = int(round(SHORT_TERM_HOP_S * sample_rate))
    padded = torch.nn.functional.pad(signal, (window_length // 2, window_length - window_length // 2))
    frames = padded.unfold(-1, window_length, hop)  # (..., K, window)
    num_short = frames.shape[-2]

    features = _short_term_features(frames, sample_rate)
    deltas = torch.zeros_like(features)
    deltas[..., 1:, :] = features[..., 1:, :] - features[..., :-1, :]
    features = torch.cat([features, deltas], dim=-1)  # (..., K, 42)

    # Mean and standard deviation over a window of short-term frames per video frame, from
    # cumulative sums so that every window costs O(1).
    frame_times = torch.arange(num_frames, dtype=torch.float64) / fps
    half_window = context_frames / fps / 2
    short_times_step = hop / sample_rate
    first = torch.ceil((frame_times - half_window) / short_times_step - 1e-9).clamp(0, num_short - 1).long()
    last = torch.floor((frame_times + half_window) / short_times_step + 1e-9).clamp(0, num_short - 1).long()
    last = torch.maximum(last, first)  # a window narrower than the hop still keeps one frame
    count = (last - first + 1).to(features.dtype)[:, None]

    cumulative = torch.nn.functional.pad(torch.cumsum(features.double(), dim=-2), (0, 0, 1, 0))
    cumulative_squares = torch.nn.functional.pad(torch.cumsum(features.double() ** 2, dim=-2), (0, 0, 1, 0))
    device = features.device
    first, last = first.to(device), last.to(device)
    total = cumulative[..., last + 1, :] - cumulative[..., first, :]
    total_squares = cumulative_squares[..., last + 1, :] - cumulative_squares[..., first, :]
    mean = total / count.to(device)
    variance = (total_squares / count.to(device) - mean**2).clamp(min=0.0)
    return torch.cat([mean, variance.sqrt()], dim=-1).to(torch.float32)
