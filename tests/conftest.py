from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SAMPLE = Path(__file__).parent / "data" / "parrots.png"


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    """A real photo: a 256x192 crop of Kodak kodim23."""
    with Image.open(SAMPLE) as im:
        return im.convert("RGB")


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def psnr(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255**2 / max(((a - b) ** 2).mean(), 1e-12)))
