"""Channel context: causal slices, identity at the start, the integer mirror, coding and training."""

import json

import numpy as np
import pytest
import torch
from conftest import SAMPLE, trained_looking
from ncodec import container as ct
from ncodec.cli.main import main
from ncodec.fixed_point import ACT_BITS
from ncodec.image_codec import CHUNK_Y, KNOWN_CHUNKS, decode_image, encode_image
from ncodec.image_model import ImageHyperprior, ImageModelConfig, warm_start
from ncodec.image_weights import export, load_coding_model, load_float_model
from PIL import Image

TINY = ImageModelConfig(n=16, m=24)
TINY_CTX = ImageModelConfig(n=16, m=24, context_slices=3, context_hidden=8)


def _trained_looking(cfg: ImageModelConfig) -> ImageHyperprior:
    """A model whose context nets are not zero (as after training)."""
    return trained_looking(cfg, "context", 0.1)


def test_a_new_context_starts_as_the_model_it_extends():
    torch.manual_seed(0)
    source, grown = ImageHyperprior(TINY).eval(), ImageHyperprior(TINY_CTX).eval()
    warm_start(grown, source)
    x = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        a, b = source(x, torch.tensor([0, 7]), noise=False), grown(x, torch.tensor([0, 7]), noise=False)
    assert torch.equal(a["x_hat"], b["x_hat"]) and torch.equal(a["bpp"], b["bpp"])
    assert len(grown.context) == 3


def test_a_slice_sees_only_the_slices_before_it():
    model = _trained_looking(TINY_CTX)
    torch.manual_seed(2)
    y, hyper = 4 * torch.randn(1, 24, 5, 7), torch.randn(1, 48, 5, 7)
    with torch.no_grad():
        mean, scale = model.latent_params(y, hyper)
        changed = y.clone()
        changed[:, 8:16] += 3.0  # slice 1
        mean2, scale2 = model.latent_params(changed, hyper)
    assert torch.equal(mean[:, :16], mean2[:, :16]) and torch.equal(scale[:, :16], scale2[:, :16])
    assert not torch.equal(mean[:, 16:], mean2[:, 16:])
    assert not torch.equal(mean[:, 8:16], hyper[:, 8:16])  # the context moved slice 1 itself


def test_the_integer_context_follows_the_float_context(tmp_path):
    path = export(_trained_looking(TINY_CTX), tmp_path / "ctx.safetensors", "tiny-ctx")
    coding, reloaded = load_coding_model(path), load_float_model(path).eval()
    assert reloaded.cfg == TINY_CTX and coding.context_margin == 0
    torch.manual_seed(3)
    inputs = torch.randn(1, 8 * 4, 6, 9) * 3  # slice 2: mean, scale and two decoded slices
    with torch.no_grad():
        ref = reloaded.context[2](inputs).double()
    exact = coding.context[2](torch.round(inputs.double() * 2**ACT_BITS)) * 2.0**-ACT_BITS
    assert (exact - ref).abs().max() < 1e-2 * ref.abs().max()


def test_a_context_model_codes_slice_by_slice_and_decodes_exactly(tmp_path, monkeypatch, photo):
    export(_trained_looking(TINY_CTX), tmp_path / "tiny-ctx.safetensors", "tiny-ctx")
    export(_trained_looking(TINY), tmp_path / "tiny-plain.safetensors", "tiny-plain")
    monkeypatch.setenv("NCODEC_MODEL_PATH", str(tmp_path))
    data = encode_image(photo, 4.0, "tiny-ctx", refine=0)
    _, chunks = ct.read_container(data, KNOWN_CHUNKS)
    assert sum(c.type == CHUNK_Y for c in chunks) == 3  # one latent tile, three slices
    plain = ct.read_container(encode_image(photo, 4.0, "tiny-plain", refine=0), KNOWN_CHUNKS)[1]
    assert sum(c.type == CHUNK_Y for c in plain) == 1
    first, second = decode_image(data), decode_image(data)
    assert first.size == photo.size and first.tobytes() == second.tobytes()
    refined = encode_image(photo, 4.0, "tiny-ctx", refine=2)
    assert decode_image(refined).size == photo.size
    truncated = ct.write_container(ct.read_container(data, KNOWN_CHUNKS)[0],
                                   [(c.type, c.data) for c in chunks[:-1]])
    with pytest.raises(ValueError, match="chunks"):
        decode_image(truncated)


def test_context_training_resumes_lowers_the_rate_and_exports(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    with Image.open(SAMPLE) as im:
        im.save(data / "a.png")
    init = export(_trained_looking(TINY), tmp_path / "tiny.safetensors", "tiny")
    run, models = tmp_path / "run", tmp_path / "models"
    models.mkdir()
    args = ["train", "image-context", "--init", str(init), "--data", str(data), "--run", str(run),
            "--slices", "3", "--hidden", "8", "--pool", "8", "--batch", "4", "--crop", "64",
            "--val", str(data), "--val-every", "60", "--lr", "3e-3"]
    torch.set_num_threads(1)
    try:
        assert main([*args, "--steps", "60"]) == 0
        assert main([*args, "--steps", "120", "--export", str(models / "tiny-ctx.safetensors"),
                     "--model-id", "tiny-ctx"]) == 0
    finally:
        torch.set_num_threads(2)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == [100]  # logged every 100 steps, across the resume
    ratios = [r["val_rate_ratio"] for r in log if "val_rate_ratio" in r]
    assert [len(r) for r in ratios] == [8] * len(ratios) and len(ratios) >= 3
    assert np.mean(ratios[-1]) < 1.0  # the context saves bits on the images it learned from
    model = load_float_model(models / "tiny-ctx.safetensors")
    assert model.cfg.context_slices == 3
    assert json.loads(model_info(models)["training"])["init"]["id"] == "tiny"
    monkeypatch.setenv("NCODEC_MODEL_PATH", str(models))
    with Image.open(SAMPLE) as im:
        assert decode_image(encode_image(im, 2.0, "tiny-ctx", refine=0)).size == im.size
    capsys.readouterr()
    assert main(["train", "image-context", "--init", str(models / "tiny-ctx.safetensors"), "--data",
                 str(data), "--run", str(tmp_path / "run2"), "--steps", "1"]) != 0
    assert "already has a channel context" in capsys.readouterr().err


def model_info(folder) -> dict:
    from safetensors import safe_open

    with safe_open(str(next(folder.glob("*.safetensors"))), "pt") as f:
        return f.metadata()


def test_fine_tuning_keeps_the_init_models_context_unless_told(tmp_path):
    from ncodec.training import checkpoint_info

    data = tmp_path / "data"
    data.mkdir()
    with Image.open(SAMPLE) as im:
        im.save(data / "a.png")
    init = export(_trained_looking(TINY_CTX), tmp_path / "tiny-ctx.safetensors", "tiny-ctx")
    common = ["train", "image", "--init", str(init), "--data", str(data), "--steps", "1", "--batch", "1",
              "--crop", "64", "--res-units", "0"]
    torch.set_num_threads(1)
    try:
        assert main([*common, "--run", str(tmp_path / "keep")]) == 0
        assert main([*common, "--run", str(tmp_path / "drop"), "--context-slices", "0"]) == 0
    finally:
        torch.set_num_threads(2)
    kept = checkpoint_info(tmp_path / "keep" / "checkpoint.safetensors")[1]["cfg"]
    assert (kept["context_slices"], kept["context_hidden"]) == (3, 8)
    assert checkpoint_info(tmp_path / "drop" / "checkpoint.safetensors")[1]["cfg"]["context_slices"] == 0
