"""The RVQ-latent image model: fitted from a hyperprior model, selected with --model, exact."""

import hashlib

import numpy as np
import pytest
from conftest import SAMPLE, psnr
from ncodec.container import read_container, write_container
from ncodec.image_codec import KNOWN_CHUNKS, ImageError, decode_image, encode_image
from ncodec.image_rvq import MIN_STAGES, RVQImageConfig, stages_for_quality
from PIL import Image

RVQ_ID = "tiny-rvq"


@pytest.fixture(scope="module")
def rvq_model(tmp_path_factory):
    """An RVQ model (6 stages of 32 codewords) fitted on the default hyperprior's latents of the sample."""
    from ncodec.train_image_rvq import fit_rvq_image
    from ncodec.zoo import find

    data = tmp_path_factory.mktemp("rvq_data")
    with Image.open(SAMPLE) as im:
        im.save(data / "a.png")
    folder = tmp_path_factory.mktemp("rvq_models")
    fit_rvq_image(find(None, "image").model_id, [str(data)], str(folder / "rvq.safetensors"), RVQ_ID,
                  batches=3, prior_batches=2, batch=4, crop=64, stages=6, codebook_size=32)
    return folder


@pytest.fixture
def use_rvq(rvq_model, monkeypatch):
    monkeypatch.setenv("NCODEC_MODEL_PATH", str(rvq_model))


def test_quality_picks_more_stages_up_to_all():
    cfg = RVQImageConfig(stages=32)
    counts = [stages_for_quality(q, cfg) for q in range(0, 7 * 256 + 1, 64)]
    assert counts[0] == MIN_STAGES and counts[-1] == 32
    assert counts == sorted(counts)


def test_more_stages_cost_more_bits_and_give_higher_psnr(use_rvq, photo):
    sizes, quality = [], []
    for q in (1, 8):
        data = encode_image(photo, q, RVQ_ID)
        sizes.append(len(data))
        quality.append(psnr(photo, decode_image(data)))
    assert sizes[0] < sizes[1] and quality[0] < quality[1]


def test_odd_sizes_and_modes_round_trip_bit_exactly(use_rvq, photo):
    image = photo.crop((3, 5, 70, 50)).convert("RGBA")
    data = encode_image(image, 3.5, RVQ_ID)
    _, chunks = read_container(data, KNOWN_CHUNKS)
    assert sorted({c.type for c in chunks}) == [b"ALPH", b"YLAT"]
    one, two = decode_image(data), decode_image(data)
    assert (one.size, one.mode) == (image.size, "RGBA")
    assert one.getchannel("A").tobytes() == image.getchannel("A").tobytes()
    assert hashlib.sha256(one.tobytes()).digest() == hashlib.sha256(two.tobytes()).digest()
    assert encode_image(image, 3.5, RVQ_ID) == data


def test_refinement_is_refused_for_rvq_models(use_rvq, photo):
    with pytest.raises(ImageError, match="RVQ"):
        encode_image(photo, 4, RVQ_ID, refine=5)


def test_file_with_a_missing_tile_is_refused(use_rvq, photo):
    header, chunks = read_container(encode_image(photo, 2, RVQ_ID), KNOWN_CHUNKS)
    damaged = write_container(header, [(c.type, c.data) for c in chunks if c.type != b"YLAT"])
    with pytest.raises(ImageError, match="chunks"):
        decode_image(damaged)


def test_a_hyperprior_model_is_required_to_fit(rvq_model, tmp_path):
    from ncodec.train_image_rvq import fit_rvq_image

    with pytest.raises(ValueError, match="not an image hyperprior"):
        fit_rvq_image(str(rvq_model / "rvq.safetensors"), [str(tmp_path)], str(tmp_path / "x.sft"), "x")


def test_cli_encodes_with_the_rvq_model(use_rvq, tmp_path):
    import subprocess
    import sys

    src, ncz, out = tmp_path / "in.png", tmp_path / "a.ncz", tmp_path / "out.png"
    Image.fromarray(np.asarray(Image.open(SAMPLE))[:33, :47]).save(src)
    run = [sys.executable, "-m", "ncodec.cli.main"]
    subprocess.run([*run, "encode", src, "-o", ncz, "--quality", "5", "--model", RVQ_ID], check=True)
    subprocess.run([*run, "decode", ncz, "-o", out], check=True)
    assert Image.open(out).size == (47, 33)
