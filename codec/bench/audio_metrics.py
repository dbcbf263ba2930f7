"""Audio quality metrics of a decoded signal against the original, both float32 [channels, n] at the
file's rate and of the same length.

- mel distance: `ncodec.audio_losses.mel_loss`, the number `ncodec train audio` validates with,
  on both signals resampled to 24 kHz (the audio model's rate; libswresample), each channel on
  its own, then the mean over channels. mel_loss is the mean over the STFT sizes 64, 128, ...,
  2048 (Hann window, hop size / 4) of L1(mel magnitudes) + L1(log(max(mel magnitudes, 1e-5))),
  with min(64, size / 4) triangular HTK-mel filters from 0 to 12 kHz; each L1 is the mean
  absolute difference over filters and frames. 0 for identical signals; lower is better.
- SI-SDR: `ncodec.audio_losses.si_sdr` per channel at the file's rate, in dB, mean over
  channels: 10 log10(|s|^2 / |s - y|^2) with s the projection of y on the original (no mean
  removal), clamped to -100..100 dB.
- PESQ (speech only, `pesq` package): the mono mix; wideband (ITU-T P.862.2) on the signals
  resampled to 16 kHz, narrowband (P.862) at 8 kHz for files below 16 kHz. MOS-LQO, higher is
  better; None when PESQ finds no speech.
- STOI (speech only, `pystoi`): classic STOI of the mono mix at the file's rate (pystoi
  resamples to 10 kHz itself), 0..1.
"""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np

MEL_RATE = 24000
MEL_MIN_SAMPLES = 2048  # the largest STFT of mel_loss: shorter signals are zero-padded to it
PESQ_WIDE_RATE, PESQ_NARROW_RATE = 16000, 8000
METRICS_MISSING = "{} is not installed; pip install 'ncodec[audio-metrics]'"
SPEECH_METRICS = {"pesq": "pesq", "stoi": "pystoi"}  # metric -> package


def speech_metrics_missing() -> dict[str, str]:
    """{metric: why it cannot be computed here} for PESQ and STOI."""
    return {metric: METRICS_MISSING.format(package) for metric, package in SPEECH_METRICS.items()
            if find_spec(package) is None}


def _resample(x: np.ndarray, rate: int, out_rate: int) -> np.ndarray:
    from ncodec.resample import resample

    return x if rate == out_rate else resample(np.ascontiguousarray(x, dtype=np.float32), rate, out_rate)


def mel_distance(x: np.ndarray, y: np.ndarray, rate: int) -> float:
    import torch
    from ncodec.audio_losses import mel_loss

    a, b = _resample(x, rate, MEL_RATE), _resample(y, rate, MEL_RATE)
    pad = max(MEL_MIN_SAMPLES - a.shape[1], 0)
    total = 0.0
    with torch.no_grad():  # not inference_mode: mel_loss caches its filters, which training reuses
        for ca, cb in zip(a, b, strict=True):
            ta, tb = (torch.from_numpy(np.pad(c, (0, pad)).astype(np.float32))[None, None] for c in (ca, cb))
            total += float(mel_loss(tb, ta, MEL_RATE))
    return total / a.shape[0]


def si_sdr(x: np.ndarray, y: np.ndarray) -> float:
    import torch
    from ncodec.audio_losses import si_sdr as _si_sdr

    tx, ty = (torch.from_numpy(np.asarray(s))[:, None] for s in (x, y))
    return float(_si_sdr(ty, tx).mean())


def pesq_score(x: np.ndarray, y: np.ndarray, rate: int) -> tuple[float | None, str]:
    """(PESQ MOS-LQO or None when PESQ finds no utterance, mode "wb" or "nb")."""
    from pesq import PesqError, pesq

    mode, pesq_rate = ("wb", PESQ_WIDE_RATE) if rate >= PESQ_WIDE_RATE else ("nb", PESQ_NARROW_RATE)
    ref, deg = (_resample(s.mean(0, keepdims=True), rate, pesq_rate)[0].astype(np.float64) for s in (x, y))
    try:
        return float(pesq(pesq_rate, ref, deg, mode)), mode
    except PesqError:
        return None, mode


def stoi_score(x: np.ndarray, y: np.ndarray, rate: int) -> float:
    from pystoi import stoi

    return float(stoi(x.mean(0).astype(np.float64), y.mean(0).astype(np.float64), rate))
