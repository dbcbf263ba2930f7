"""CompressAI checkpoints a user trained, benchmarked inside the ncodec container.

compressai pins numpy<2 and its own torch, so these tests run in a separate environment that has
it (.ci/run builds one); conftest.py leaves this file out where compressai is not installed.
"""

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_helpers import run_bench
from ncodec.bench import BenchError
from ncodec.bench.codecs import get_codec
from ncodec.container import ContainerError, Modality, read_container
from PIL import Image

SAMPLE = Path(__file__).parent / "data" / "parrots.png"
ARCH = "bmshj2018-hyperprior"
bench = partial(run_bench, "image")


def train_hyperprior(lam: float, steps: int = 8) -> dict:
    """A small bmshj2018-hyperprior (N=16, M=24) after a few rate + lam * MSE steps on the sample photo,
    saved the way CompressAI's examples/train.py saves it."""
    from compressai.models import ScaleHyperprior

    torch.manual_seed(0)
    net = ScaleHyperprior(16, 24)
    with Image.open(SAMPLE) as im:
        x = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(steps):
        out = net(x[..., :128, :128])
        bits = sum(torch.log2(p).sum() for p in out["likelihoods"].values())
        loss = -bits / (128 * 128) + lam * 255**2 * (out["x_hat"] - x[..., :128, :128]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"epoch": 0, "state_dict": net.state_dict()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("checkpoints")
    for i, lam in enumerate((0.002, 0.02), start=1):
        torch.save(train_hyperprior(lam), folder / f"q{i}.pth.tar")
    (folder / "notes.txt").write_text("not a checkpoint")
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    with Image.open(SAMPLE) as im:
        im.convert("RGB").crop((0, 0, 97, 75)).save(folder / "odd.png")
        im.convert("RGB").save(folder / "whole.png")
    return folder


def test_user_checkpoints_sit_in_the_same_table(checkpoints, photos, tmp_path):
    name = f"compressai:{ARCH}@{checkpoints}"
    code, err = bench("--dataset", photos, "--codecs", f"{name},webp", "--settings", "webp=30,70",
                      "--out", tmp_path)
    assert code == 0, err
    result = json.loads((tmp_path / f"image_{photos.name}.json").read_text())
    rows = [r for r in result["rows"] if r["codec"] == name]
    assert sorted((r["image"], r["setting"]) for r in rows) == [
        ("odd.png", 1), ("odd.png", 2), ("whole.png", 1), ("whole.png", 2)]
    for r in rows:
        assert r["bpp"] > 0 and math.isfinite(r["psnr"])
    assert name in (tmp_path / f"image_{photos.name}.md").read_text()


def test_the_bitstream_is_an_ncodec_container_that_round_trips(checkpoints):
    codec = get_codec(f"compressai:{ARCH}@{checkpoints}")
    with Image.open(SAMPLE) as im:
        rgb = np.asarray(im.convert("RGB"))[:75, :97]
    data = codec.encode(rgb, 2)
    header, chunks = read_container(data, known={b"XSTR"})
    assert header.modality == Modality.IMAGE and header.model_id == f"compressai.{ARCH}"
    assert [c.type for c in chunks] == [b"XSTR", b"XSTR"]  # latent and hyper-latent strings
    first, second = codec.decode(data), codec.decode(data)
    assert first.shape == rgb.shape and first.dtype == np.uint8
    assert np.array_equal(first, second)
    damaged = bytearray(data)
    damaged[len(data) // 2] ^= 1
    with pytest.raises(ContainerError):
        codec.decode(bytes(damaged))


def test_a_file_from_other_weights_is_refused(checkpoints, tmp_path):
    q1 = get_codec(f"compressai:{ARCH}@{checkpoints / 'q1.pth.tar'}")
    with Image.open(SAMPLE) as im:
        data = q1.encode(np.asarray(im.convert("RGB"))[:64, :64], 1)
    other = tmp_path / "other"
    other.mkdir()
    torch.save(train_hyperprior(0.005, steps=3), other / "q1.pth")
    with pytest.raises(ContainerError, match="encoded with other"):
        get_codec(f"compressai:{ARCH}@{other}").decode(data)


def test_a_checkpoint_of_another_architecture_is_a_clear_error(checkpoints):
    codec = get_codec(f"compressai:mbt2018-mean@{checkpoints}")
    with pytest.raises(BenchError, match="is not a mbt2018-mean checkpoint"):
        codec.encode(np.zeros((64, 64, 3), np.uint8), 1)
