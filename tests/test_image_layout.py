"""Residual units in the image transforms: warm starts, the integer mirror and tiling margins."""

import torch
from conftest import trained_looking
from ncodec.fixed_point import ACT_BITS, run_tiled
from ncodec.image_model import ImageHyperprior, ImageModelConfig, warm_start
from ncodec.image_weights import export, load_coding_model, load_float_model

TINY = ImageModelConfig(n=16, m=24)
TINY_RES = ImageModelConfig(n=16, m=24, res_units=1)


def test_new_residual_units_start_as_the_model_they_extend():
    torch.manual_seed(0)
    source, grown = ImageHyperprior(TINY).eval(), ImageHyperprior(TINY_RES).eval()
    warm_start(grown, source)
    x = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        a, b = source(x, torch.tensor([0, 7]), noise=False), grown(x, torch.tensor([0, 7]), noise=False)
    assert torch.equal(a["x_hat"], b["x_hat"]) and torch.equal(a["bpp"], b["bpp"])
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in source.parameters())


def _trained_looking(cfg: ImageModelConfig) -> ImageHyperprior:
    """A model whose residual branches are not zero (as after training)."""
    return trained_looking(cfg, "g_s", 0.02)


def test_integer_residual_units_follow_the_float_synthesis(tmp_path):
    model = _trained_looking(TINY_RES)
    path = export(model, tmp_path / "res.safetensors", "tiny-res")
    coding, reloaded = load_coding_model(path), load_float_model(path).eval()
    assert reloaded.cfg == TINY_RES
    y = torch.randn(1, 24, 6, 9) * 4
    with torch.no_grad():
        ref = reloaded.g_s(y).double()
    exact = coding.g_s(torch.round(y.double() * 2**ACT_BITS)) * 2.0**-ACT_BITS
    assert (exact - ref).abs().max() < 1e-2 * ref.abs().max()


def test_tiling_margin_covers_the_residual_units(tmp_path, rng):
    plain = load_coding_model(export(_trained_looking(TINY), tmp_path / "a.safetensors", "tiny-a"))
    grown = load_coding_model(export(_trained_looking(TINY_RES), tmp_path / "b.safetensors", "tiny-b"))
    assert (plain.synthesis_margin, grown.synthesis_margin) == (2, 6)
    assert grown.analysis_margin > plain.analysis_margin
    y = torch.from_numpy(rng.integers(-3 << ACT_BITS, 3 << ACT_BITS, (1, 24, 20, 28))).double()
    whole = grown.g_s(y)
    tiled = run_tiled(grown.g_s, y, 16, tile=6, margin=grown.synthesis_margin,
                      out=torch.empty(1, 3, 320, 448, dtype=torch.float64))
    short = run_tiled(grown.g_s, y, 16, tile=6, margin=plain.synthesis_margin,
                      out=torch.empty(1, 3, 320, 448, dtype=torch.float64))
    assert torch.equal(whole, tiled)
    assert not torch.equal(whole, short)  # the old margin would leave seams
