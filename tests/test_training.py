"""`train` runs, resumes from its checkpoint, and exports a model the codec can use."""

import json
import math

import pytest
import torch
from conftest import SAMPLE
from ncodec.image_model import ImageModelConfig
from ncodec.train_image import train
from PIL import Image

TINY = ImageModelConfig(n=16, m=24)


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    with Image.open(SAMPLE) as im:
        im.save(folder / "a.png")
        im.transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(folder / "b.jpg", quality=95)
    (folder / "LICENSE.txt").write_text("ignored by the loader")
    return folder


def steps_logged(run) -> list[int]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if "loss" in line]


def test_training_resumes_and_exports_a_usable_model(data_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    kwargs = dict(minutes=5, batch=2, crop=64, val=str(data_dir), val_every=50, cfg=TINY)
    train([str(data_dir)], str(run), steps=50, **kwargs)
    assert steps_logged(run) == [50]
    train([str(data_dir)], str(run), steps=100, **kwargs)
    assert steps_logged(run) == [50, 100]
    vals = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()
            if "val" in line]
    assert len(vals[-1]["val"]["bpp"]) == TINY.levels

    from ncodec.image_model import ImageHyperprior
    from ncodec.image_weights import export
    from safetensors.torch import load_file

    model = ImageHyperprior(TINY)
    state = load_file(str(run / "checkpoint.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
    models = tmp_path / "models"
    models.mkdir()
    export(model, models / "tiny.safetensors", "tiny-test")
    monkeypatch.setenv("NCODEC_MODEL_PATH", str(models))

    import ncodec

    assert any(m["id"] == "tiny-test" for m in ncodec.models())
    with Image.open(SAMPLE) as im:
        data = ncodec.encode(im, quality=4, model="tiny-test")
        assert ncodec.decode(data).size == im.size
    assert ncodec.info(data)["model"] == "tiny-test"


def test_training_refuses_an_empty_data_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        train([str(tmp_path / "empty")], str(tmp_path / "run"), minutes=1, steps=1, cfg=TINY)


def test_auto_precision_takes_bf16_only_where_the_cpu_computes_it_natively(tmp_path):
    from ncodec.training import cpu_flags, resolve_precision

    assert resolve_precision("auto", "cpu", {"avx2", "avx512f", "avx512bw"}) == "fp32"  # emulated bf16
    assert resolve_precision("auto", "cpu", {"avx512f", "avx512_bf16"}) == "bf16"
    assert resolve_precision("auto", "cpu", {"amx_bf16", "amx_tile"}) == "bf16"
    assert resolve_precision("fp32", "cpu", {"amx_bf16"}) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")
    info = tmp_path / "cpuinfo"
    cpu = "flags\t\t: fpu avx2 amx_bf16\n"
    info.write_text(f"processor\t: 0\n{cpu}\nprocessor\t: 1\n{cpu}")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_training_only_the_decoder_leaves_everything_else_as_it_was(data_dir, tmp_path):
    from ncodec.image_model import ImageHyperprior
    from ncodec.image_weights import export, load_float_model
    from ncodec.train_image import checkpoint_model

    run = tmp_path / "run"
    torch.manual_seed(0)
    init = tmp_path / "start.safetensors"
    export(ImageHyperprior(TINY), init, "tiny-start")
    before = load_float_model(init).state_dict()
    train([str(data_dir)], str(run), minutes=5, steps=3, batch=2, crop=64, lr=1e-2, init=str(init),
          precision="fp32", parts=("g_s",))
    after, meta = checkpoint_model(run / "checkpoint.safetensors")
    assert meta["parts"] == ["g_s"]
    changed = {k.split(".")[0] for k, v in after.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"g_s"}
    train([str(data_dir)], str(run), minutes=5, steps=4, batch=2, crop=64, lr=1e-2, precision="fp32")
    resumed, meta = checkpoint_model(run / "checkpoint.safetensors")
    assert meta["parts"] == ["g_s"]  # a resumed run keeps its parts
    assert torch.equal(resumed.g_a[0].weight, before["g_a.0.weight"])


def test_training_refuses_unknown_parts(data_dir, tmp_path):
    with pytest.raises(ValueError, match="parts to train"):
        train([str(data_dir)], str(tmp_path / "run"), minutes=1, steps=1, cfg=TINY, parts=("decoder",))


def test_the_rounded_rate_is_deterministic_and_its_gradients_reach_the_entropy_model():
    from ncodec.image_model import ImageHyperprior

    torch.manual_seed(0)
    model = ImageHyperprior(TINY)
    x = torch.rand(2, 3, 64, 64)
    level = torch.tensor([0, TINY.levels - 1])
    first = model(x, level, noise=False)["bpp"]
    assert torch.equal(first, model(x, level, noise=False)["bpp"])  # no noise: the symbols coding writes
    first.sum().backward()
    for net in (model.z_density, model.h_s, model.g_a):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_training_on_rounded_latents_is_recorded_and_kept_on_resume(data_dir, tmp_path):
    from ncodec.train_image import checkpoint_model

    run = tmp_path / "run"
    train([str(data_dir)], str(run), minutes=5, steps=2, batch=2, crop=64, cfg=TINY, precision="fp32",
          parts=("h_s", "z_density"), quantization="round")
    train([str(data_dir)], str(run), minutes=5, steps=3, batch=2, crop=64, precision="fp32")
    _, meta = checkpoint_model(run / "checkpoint.safetensors")
    assert (meta["steps"], meta["quantization"], meta["parts"]) == (3, "round", ["h_s", "z_density"])
    with pytest.raises(ValueError, match="unknown quantization"):
        train([str(data_dir)], str(tmp_path / "other"), minutes=1, steps=1, cfg=TINY, quantization="hard")


def test_a_new_lambda_ladder_moves_the_gains_and_travels_with_the_model(data_dir, tmp_path):
    from ncodec.image_model import LAMBDAS, ImageHyperprior
    from ncodec.image_refine import quality_lambda
    from ncodec.image_weights import export, image_config
    from ncodec.train_image import checkpoint_model
    from ncodec.zoo import describe

    torch.manual_seed(0)
    source = ImageHyperprior(TINY)
    init = tmp_path / "start.safetensors"
    export(source, init, "tiny-start")
    ladder = (LAMBDAS[0] / 4, LAMBDAS[0], *LAMBDAS[2:])  # one level below the old range, one dropped
    cfg = ImageModelConfig(n=16, m=24, lambdas=ladder)
    run = tmp_path / "run"
    train([str(data_dir)], str(run), minutes=5, steps=1, batch=2, crop=64, lr=1e-9, init=str(init), cfg=cfg,
          precision="fp32", parts=("g_s",))
    model, meta = checkpoint_model(run / "checkpoint.safetensors")
    assert model.cfg.lambdas == ladder and meta["cfg"]["lambdas"] == list(ladder)
    old = source.log_gain.data
    assert torch.allclose(model.log_gain[1], old[0]) and torch.allclose(model.log_gain[2:], old[2:])
    below = math.log(4) / math.log(LAMBDAS[1] / LAMBDAS[0])  # the first segment, extended
    assert torch.allclose(model.log_gain[0], old[0] - below * (old[1] - old[0]), atol=1e-6)
    export(model, tmp_path / "new.safetensors", "tiny-new")
    assert image_config(describe(tmp_path / "new.safetensors")).lambdas == ladder
    assert quality_lambda(2.0, ladder) == pytest.approx(LAMBDAS[0])


def test_a_lambda_ladder_must_match_the_levels_and_increase():
    with pytest.raises(ValueError, match="as many lambdas"):
        ImageModelConfig(levels=3)
    with pytest.raises(ValueError, match="increasing"):
        ImageModelConfig(levels=2, lambdas=(0.01, 0.001))
    cfg = ImageModelConfig(levels=2, lambdas=[0.001, 0.01])
    assert ImageModelConfig(**json.loads(json.dumps(cfg.as_dict()))) == cfg
