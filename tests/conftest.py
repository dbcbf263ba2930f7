import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SAMPLE = Path(__file__).parent / "data" / "parrots.png"

# The CompressAI interop tests need compressai, which lives in its own environment (.ci/run).
collect_ignore = [] if find_spec("compressai") else ["test_compressai_interop.py"]


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    """A real photo: a 256x192 crop of Kodak kodim23."""
    with Image.open(SAMPLE) as im:
        return im.convert("RGB")


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def imported_after(*modules: str) -> set[str]:
    """The modules a fresh interpreter holds once it has imported `modules`."""
    res = subprocess.run([sys.executable, "-c", f"import sys, {', '.join(modules)}; print(*sys.modules)"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return set(res.stdout.split())


def trained_looking(cfg, part: str, spread: float):
    """A tiny image model whose `part` (e.g. "g_s", "context"), zero-initialised where new
    layers start as identity, has its parameters moved by noise of `spread`, as after training."""
    import torch
    from ncodec.image_model import ImageHyperprior

    torch.manual_seed(1)
    model = ImageHyperprior(cfg).eval()
    with torch.no_grad():
        for p in getattr(model, part).parameters():
            p.add_(spread * torch.randn_like(p))
    return model


def psnr(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255**2 / max(((a - b) ** 2).mean(), 1e-12)))


AUDIO_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "audio"
AUDIO_SPEECH = AUDIO_DATA / "speech_ljspeech_subset"
TINY_AUDIO_ID = "tiny-audio"


@pytest.fixture(scope="session")
def tiny_audio_model(tmp_path_factory) -> tuple[str, Path]:
    """(model id, folder) of a tiny RVQ audio model trained for 2 steps on two speech clips (or
    synthetic tones when the shared datasets are absent) and exported: put the folder on
    NCODEC_MODEL_PATH to use it. Built on first use only (a few seconds on one thread)."""
    import soundfile as sf
    import torch
    from ncodec.audio_model import TINY
    from ncodec.audio_weights import export
    from ncodec.train_audio import load_checkpoint_model, train

    data = tmp_path_factory.mktemp("tiny_audio_data")
    clips = sorted(AUDIO_SPEECH.glob("*.wav"))[:2] if AUDIO_SPEECH.is_dir() else []
    for clip in clips:
        (data / clip.name).write_bytes(clip.read_bytes())
    if not clips:
        t = np.arange(3 * 22050) / 22050
        for i in range(2):
            sf.write(data / f"tone{i}.wav", 0.3 * np.sin(2 * np.pi * (220 + 110 * i) * t), 22050)
    run = tmp_path_factory.mktemp("tiny_audio_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains fastest on one thread, above all on a busy machine
    try:
        train([str(data)], str(run), minutes=5, steps=2, batch=2, seconds=0.2, cfg=TINY, log_every=1)
    finally:
        torch.set_num_threads(threads)
    folder = tmp_path_factory.mktemp("tiny_audio_models")
    model, training = load_checkpoint_model(run / "checkpoint.safetensors")
    export(model, folder / f"{TINY_AUDIO_ID}.safetensors", TINY_AUDIO_ID, training)
    return TINY_AUDIO_ID, folder
