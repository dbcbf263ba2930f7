"""Sample-rate conversion with libswresample (through PyAV), streaming or whole-signal.

int16 conversion runs in integer arithmetic (int16 filter taps, integer accumulation), so for a
given libswresample build its output does not depend on the CPU, thread count or block sizes:
the audio decoder relies on this. float32 conversion is for the encoder and for training.
"""

from __future__ import annotations

import numpy as np

_FORMATS = {np.dtype(np.float32): "fltp", np.dtype(np.int16): "s16p"}
_LAYOUTS = {1: "mono", 2: "stereo"}


class Resampler:
    """Converts [channels, n] blocks from in_rate to out_rate; `flush` after the last block.

    Output sample j is input position j * in_rate / out_rate (the filter delay is compensated);
    the whole output of a stream is about ceil(n * out_rate / in_rate) samples.
    """

    def __init__(self, channels: int, in_rate: int, out_rate: int, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.channels, self.in_rate = channels, in_rate
        self._format, self._layout = _FORMATS[self.dtype], _LAYOUTS[channels]
        import av  # only when audio is resampled: keeps the CLI's start fast

        self._av = av
        self._swr = None if in_rate == out_rate else av.AudioResampler(self._format, self._layout, out_rate)

    def _collect(self, frames) -> np.ndarray:
        parts = [f.to_ndarray() for f in frames]
        return np.concatenate(parts, 1) if parts else np.zeros((self.channels, 0), self.dtype)

    def push(self, block: np.ndarray) -> np.ndarray:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if self._swr is None or block.shape[1] == 0:
            return block
        frame = self._av.AudioFrame.from_ndarray(block, format=self._format, layout=self._layout)
        frame.sample_rate = self.in_rate
        return self._collect(self._swr.resample(frame))

    def flush(self) -> np.ndarray:
        if self._swr is None:
            return np.zeros((self.channels, 0), self.dtype)
        return self._collect(self._swr.resample(None))


def resample(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Whole-signal float32 conversion of x [channels, n]."""
    r = Resampler(x.shape[0], in_rate, out_rate)
    return np.concatenate([r.push(x), r.flush()], 1)
