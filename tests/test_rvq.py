"""Residual vector quantization: backends agree, bad input is refused, the module trains."""

from __future__ import annotations

import os
import subprocess
import sys

import ncodec
import numpy as np
import pytest
import torch
from ncodec.entropy import coder
from ncodec.entropy.categorical import CategoricalPrior, stage_index
from ncodec.rvq import ResidualVectorQuantizer
from ncodec.rvq_backends import rvq_decode, rvq_encode

NATIVE = [b for b in ("cpp", "cuda") if ncodec.quantize_backends()[b].startswith("available")]


def _device(backend: str) -> str:
    return "cuda" if backend == "cuda" else "cpu"


def _first_stage_distances(x: torch.Tensor, cb: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    """For each row, float64 distances of codes a and b at the first stage where they differ."""
    x, cb = x.double().cpu(), cb.double().cpu()
    a, b = a.cpu(), b.cpu()
    out = []
    for row in torch.nonzero((a != b).any(1)).flatten().tolist():
        r = x[row].clone()
        for s in range(cb.shape[0]):
            if a[row, s] != b[row, s]:
                da = (r - cb[s, a[row, s]]).pow(2).sum().item()
                db = (r - cb[s, b[row, s]]).pow(2).sum().item()
                out.append((da, db, r.pow(2).sum().item()))
                break
            r -= cb[s, a[row, s]]
    return out


def assert_same_codes_up_to_ties(x, cb, got, want):
    """Codes may differ only where the two choices are equally near (fp32 rounding)."""
    for da, db, norm in _first_stage_distances(x, cb, got, want):
        assert abs(da - db) <= 1e-5 * (norm + da + db), (da, db)
    assert (got != want).any(1).float().mean() < 0.01


# the ISA cap is a CPU kernel option: "avx2" and "generic" run for cpp only
NATIVE_ISAS = [(b, "auto") for b in NATIVE] + [("cpp", "avx2"), ("cpp", "generic")] * ("cpp" in NATIVE)


@pytest.mark.parametrize("backend, isa", NATIVE_ISAS)
@pytest.mark.parametrize("N,S,K,D", [(1, 1, 1, 1), (5, 3, 7, 3), (67, 4, 25, 13), (300, 8, 130, 128),
                                     (1000, 2, 1024, 64)])
def test_native_backend_matches_torch(backend, isa, N, S, K, D, monkeypatch):
    if isa != "auto":
        monkeypatch.setenv("NCODEC_RVQ_ISA", isa)
    g = torch.Generator().manual_seed(N * 31 + K)
    x = torch.randn(N, D, generator=g).to(_device(backend))
    cb = (torch.randn(S, K, D, generator=g) * torch.linspace(1.0, 0.2, S)[:, None, None]).to(x.device)
    want = rvq_encode(x, cb, "torch")
    got = rvq_encode(x, cb, backend)
    assert got.dtype == torch.int64 and got.shape == (N, S) and got.device == x.device
    assert_same_codes_up_to_ties(x, cb, got, want)
    assert torch.allclose(rvq_decode(got, cb), rvq_decode(want, cb), atol=1e-4) or \
        (got != want).any()


@pytest.mark.parametrize("backend", ["torch", *NATIVE])
def test_exact_ties_pick_the_lowest_index(backend):
    dev = _device(backend)
    word = torch.tensor([[1.0, -2.0, 0.5]])
    cb = torch.cat([torch.full((5, 3), 9.0), word, word, word])[None].to(dev)  # 5, 6, 7 identical
    x = torch.tensor([[1.0, -2.0, 0.5], [1.1, -2.1, 0.4]], device=dev)
    assert rvq_encode(x, cb, backend).flatten().tolist() == [5, 5]


@pytest.mark.parametrize("backend", ["torch", *NATIVE])
def test_encode_then_decode_approximates_and_more_stages_help(backend):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 16, generator=g)
    rvq = ResidualVectorQuantizer(16, n_stages=6, codebook_size=64, backend=backend)
    rvq.init_codebooks(x)
    cb = rvq.embed[0].to(_device(backend))
    codes = rvq_encode(x.to(cb.device), cb, backend)
    errors = [(x - rvq_decode(codes[:, :n], cb).cpu()).pow(2).mean().item() for n in range(1, 7)]
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.25 * x.pow(2).mean().item()


def test_decode_is_the_sum_of_selected_codewords():
    cb = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)
    codes = torch.tensor([[2, 0], [1, 2]])
    assert rvq_decode(codes, cb).tolist() == [[4 + 6, 5 + 7], [2 + 10, 3 + 11]]
    assert rvq_decode(codes[:, :1], cb).tolist() == [[4, 5], [2, 3]]


def test_empty_input_gives_empty_codes():
    cb = torch.randn(3, 8, 4)
    codes = rvq_encode(torch.empty(0, 4), cb)
    assert codes.shape == (0, 3) and codes.dtype == torch.int64
    assert rvq_decode(codes, cb).shape == (0, 4)


@pytest.mark.parametrize("backend", ["torch", *NATIVE])
@pytest.mark.parametrize("x,cb,err,match", [
    (torch.randn(4, 3).double(), torch.randn(2, 5, 3), TypeError, "float32"),
    (torch.randn(4, 3), torch.randn(2, 5, 3).half(), TypeError, "float32"),
    (np.zeros((4, 3), np.float32), torch.randn(2, 5, 3), TypeError, "torch.Tensor"),
    (torch.randn(4, 3, 1), torch.randn(2, 5, 3), ValueError, r"\[N, D\]"),
    (torch.randn(4, 3), torch.randn(5, 3), ValueError, r"\[S, K, D\]"),
    (torch.randn(4, 3), torch.randn(2, 5, 4), ValueError, "D=3"),
    (torch.tensor([[0.0, float("nan"), 1.0]]), torch.randn(2, 5, 3), ValueError, "NaN"),
    (torch.randn(4, 3), torch.full((2, 5, 3), float("inf")), ValueError, "NaN or inf"),
    (torch.randn(4, 1), torch.randn(1, 65536, 1), ValueError, "65535"),
    (torch.randn(4, 3), torch.randn(0, 5, 3), ValueError, "no stages"),
])
def test_bad_input_raises_a_clear_error(backend, x, cb, err, match):
    if backend == "cuda":
        x = x.cuda() if isinstance(x, torch.Tensor) else x
        cb = cb.cuda()
    with pytest.raises(err, match=match):
        rvq_encode(x, cb, backend)


def test_backend_and_device_mismatches_are_refused():
    x, cb = torch.randn(4, 3), torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match="unknown backend"):
        rvq_encode(x, cb, "fortran")
    with pytest.raises(ValueError, match="on meta"):
        rvq_encode(x, cb.to("meta"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA tensors"):
            rvq_encode(x, cb, "cuda")


def test_decode_refuses_codes_out_of_range_and_too_many_stages():
    cb = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        rvq_decode(torch.tensor([[5, 0]]), cb)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        rvq_decode(torch.tensor([[-1, 0]]), cb)
    with pytest.raises(ValueError, match="only 2"):
        rvq_decode(torch.zeros(1, 3, dtype=torch.long), cb)
    with pytest.raises(TypeError, match="integer"):
        rvq_decode(torch.zeros(1, 2), cb)


def test_backends_are_listed_with_reasons():
    state = ncodec.quantize_backends()
    assert set(state) == {"torch", "cpp", "cuda"}
    assert state["torch"].startswith("available")
    for v in state.values():
        assert v.startswith(("available", "unavailable: "))
    if not torch.cuda.is_available():
        assert state["cuda"].startswith("unavailable: ")


def test_disabled_cpp_backend_falls_back_to_torch_and_says_why(tmp_path):
    code = ("import torch, ncodec; print(ncodec.quantize_backends()['cpp']);"
            "print(ncodec.rvq_encode(torch.zeros(2, 3), torch.zeros(1, 4, 3)).tolist())")
    env = {**os.environ, "NCODEC_DISABLE_CPP": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["unavailable: disabled by NCODEC_DISABLE_CPP", "[[0], [0]]"]


@pytest.mark.skipif("cpp" not in NATIVE, reason="needs a C++ compiler and ninja")
def test_cpp_kernel_is_built_once_and_cached(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    code = "import ncodec; print(ncodec.quantize_backends()['cpp'])"
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           check=True) for _ in range(2)]
    assert "building" in runs[0].stderr and "built once" in runs[0].stdout
    assert runs[1].stderr == "" and "cached at" in runs[1].stdout
    assert str(tmp_path) in runs[1].stdout


# ------------------------------------------------------------------------- the module


def _clustered(n: int, dim: int, centres: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(centres, dim, generator=g) * 3
    return c[torch.randint(0, centres, (n,), generator=g)] + 0.1 * torch.randn(n, dim, generator=g)


def test_kmeans_init_beats_random_codebooks():
    x = _clustered(4000, 8, 32, 1)
    err = {}
    for init in (True, False):
        torch.manual_seed(0)
        rvq = ResidualVectorQuantizer(8, n_stages=1, codebook_size=32, kmeans_init=init,
                                      dead_code_threshold=0.0).train()
        err[init] = (rvq(x).quantized - x).pow(2).mean().item()
    assert err[True] < 0.2 * err[False]


def test_ema_training_reduces_error_and_revives_dead_codes():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(8, n_stages=2, codebook_size=64, kmeans_init=False,
                                  dead_code_threshold=0.5).train()
    rvq.embed[0, 0, :32] += 100.0  # half of stage 0 far from every input: dead codes
    x = _clustered(2048, 8, 64, 2)
    first = rvq(x)
    for _ in range(30):
        last = rvq(x)
    before = (first.quantized - x).pow(2).mean().item()
    after = (last.quantized - x).pow(2).mean().item()
    assert after < 0.5 * before
    assert (rvq.embed[0, 0, :32].abs().max() < 50).item()  # re-seeded from the data
    assert last.usage[0] > 0.5  # more than the 32 codes that were never dead
    assert torch.all(last.perplexity >= 1.0)


def test_eval_mode_does_not_touch_codebooks_and_matches_encode_decode():
    x = _clustered(512, 12, 16, 3)
    rvq = ResidualVectorQuantizer(12, n_stages=3, codebook_size=16, groups=2)
    rvq.train()(x)
    rvq.eval()
    before = rvq.embed.clone()
    out = rvq(x)
    assert torch.equal(rvq.embed, before)
    codes = rvq.encode(x)
    assert codes.shape == (512, 6) and torch.equal(codes, out.codes)
    assert torch.allclose(rvq.decode(codes), out.quantized, atol=1e-5)


def test_sequence_layout_round_trips():
    rvq = ResidualVectorQuantizer(6, n_stages=2, codebook_size=8).train()
    x = torch.randn(3, 6, 10)
    out = rvq(x)
    assert out.quantized.shape == x.shape
    rvq.eval()
    codes = rvq.encode(x).view(3, 10, 2)
    assert torch.allclose(rvq.decode(codes), rvq(x).quantized, atol=1e-5)


def test_quantizer_dropout_varies_the_stage_count_and_prefixes_are_valid_codes():
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(4, n_stages=6, codebook_size=8, dropout=True).train()
    x = torch.randn(256, 4)
    counts = {rvq(x).n_stages for _ in range(40)}
    assert counts == set(range(1, 7))
    rvq.eval()
    assert rvq(x).n_stages == 6
    full = rvq.encode(x)
    assert torch.equal(rvq.encode(x, n_stages=2), full[:, :2])
    assert rvq.bits_per_vector(2) == 2 * 3


@pytest.mark.parametrize("grad", ["ste", "rotation"])
def test_gradients_reach_the_input(grad):
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(5, n_stages=2, codebook_size=8, grad=grad).train()
    x = torch.randn(64, 5, requires_grad=True)
    out = rvq(x)
    assert torch.allclose(out.quantized, rvq.decode(out.codes), atol=1e-5)
    w = torch.randn(64, 5)
    (out.quantized * w).sum().backward()
    if grad == "ste":
        assert torch.allclose(x.grad, w)
    else:  # a rotation scaled by |q|/|e|: the gradient keeps its norm up to that factor
        q, e = out.quantized.detach(), x.detach()
        ratio = x.grad.norm(dim=1) / w.norm(dim=1)
        assert torch.allclose(ratio, q.norm(dim=1) / e.norm(dim=1), rtol=1e-4)
        assert not torch.allclose(x.grad, w)


def test_commitment_loss_pulls_the_encoder_towards_its_codes():
    rvq = ResidualVectorQuantizer(3, n_stages=1, codebook_size=4, beta=0.5).train()
    x = torch.randn(32, 3, requires_grad=True)
    out = rvq(x)
    assert out.commit_loss.item() == pytest.approx(0.5 * (x - out.quantized).pow(2).mean().item(),
                                                   rel=1e-5)
    out.commit_loss.backward()
    assert torch.allclose(x.grad, (x - out.quantized.detach()) * (2 * 0.5 / x.numel()), atol=1e-7)


def test_module_rejects_bad_configuration_and_shapes():
    with pytest.raises(ValueError, match="divisible"):
        ResidualVectorQuantizer(10, groups=3)
    with pytest.raises(ValueError, match="65535"):
        ResidualVectorQuantizer(4, codebook_size=70000)
    with pytest.raises(ValueError, match="grad"):
        ResidualVectorQuantizer(4, grad="magic")
    rvq = ResidualVectorQuantizer(4, n_stages=2, codebook_size=4)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        rvq(torch.randn(3, 5))
    with pytest.raises(ValueError, match="n_stages"):
        rvq(torch.randn(3, 4), n_stages=3)
    with pytest.raises(ValueError, match="columns"):
        rvq.decode(torch.zeros(3, 3, dtype=torch.long))


def test_codes_entropy_code_with_per_stage_priors_below_fixed_length():
    x = _clustered(3000, 8, 20, 4)
    rvq = ResidualVectorQuantizer(8, n_stages=3, codebook_size=64).train()
    for _ in range(5):
        rvq(x)
    codes = rvq.eval().encode(x)
    prior = CategoricalPrior(3, 64)
    prior.fit_counts(codes)
    tables = prior.table_set()
    symbols = codes.numpy().ravel()
    index = stage_index(codes.numpy())
    payload = coder.encode(symbols, index, tables)
    assert np.array_equal(coder.decode(payload, index, tables), symbols)
    assert 8 * len(payload) < codes.numel() * 6  # beats 6-bit fixed-length packing


@pytest.mark.skipif("cpp" not in NATIVE, reason="the C++ backend is not built here")
def test_cpu_kernels_give_identical_codes(monkeypatch):
    """The AVX-512 and AVX2 kernels sum every dot product in the same order: same codes, bit for bit."""
    g = torch.Generator().manual_seed(7)
    x, cb = torch.randn(777, 128, generator=g), torch.randn(4, 1000, 128, generator=g)
    codes = {}
    for isa in ("auto", "avx2"):
        monkeypatch.setenv("NCODEC_RVQ_ISA", isa)
        codes[isa] = rvq_encode(x, cb, "cpp")
    assert torch.equal(codes["auto"], codes["avx2"])
