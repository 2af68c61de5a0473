"""Audio input: decode (soundfile), downmix to mono, resample to 16 kHz (soxr), standardise.

```python
from spidrkit.audio import load_audio, standardize
wav = load_audio("utt.flac")          # float32 [samples], mono, 16 kHz (any input rate/channels)
x = standardize(wav)                  # zero mean, unit variance: what the model reads
wav = load_audio(raw_bytes, name="a.tar:utt.wav")   # decode from memory (tar members, HTTP bodies)
```
Needs the ``audio`` extra (``pip install 'spidrkit[audio]'``). See ``spidrkit.audio.io``.
"""

from spidrkit.audio.io import (
    AUDIO_EXTENSIONS,
    SAMPLE_RATE,
    STANDARDIZE_EPS,
    AudioInfo,
    audio_info,
    load_audio,
    resample,
    resampled_length,
    standardize,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "STANDARDIZE_EPS",
    "SAMPLE_RATE",
    "AudioInfo",
    "audio_info",
    "load_audio",
    "resample",
    "resampled_length",
    "standardize",
]
