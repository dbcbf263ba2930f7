"""Audio codec: a tiny model trained for a few steps, exported, and used end to end."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from ncodec import container as ct
from ncodec.audio_codec import AudioDecoder, AudioError, AudioParams, decode_audio, encode_audio
from ncodec.audio_model import TINY, AudioCodecModel, AudioModelConfig, bitrates
from ncodec.audio_weights import export, load_coding_model, load_float_model
from ncodec.bench.machine import cpu_model
from ncodec.fixed_point import ACT_BITS
from ncodec.train_audio import load_checkpoint_model, train

SPEECH = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "audio" / "speech_ljspeech_subset"
MODEL_ID = "tiny-audio-test"


def tone(rate: int, seconds: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A chord with some noise, left and right differing: [channels, n] float32."""
    t = np.arange(round(rate * seconds)) / rate
    rng = np.random.default_rng(seed)
    chans = [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.2 * np.sin(2 * np.pi * 1250 * t)
             + 0.02 * rng.standard_normal(t.size) for c in range(channels)]
    return np.stack(chans).astype(np.float32)


@pytest.fixture(scope="session")
def audio_data(tmp_path_factory) -> Path:
    """Two speech clips from the shared datasets, or synthetic tones when they are absent."""
    folder = tmp_path_factory.mktemp("audio_data")
    clips = sorted(SPEECH.glob("*.wav"))[:2] if SPEECH.is_dir() else []
    for clip in clips:
        shutil.copy(clip, folder / clip.name)
    if not clips:
        for i in range(2):
            sf.write(folder / f"tone{i}.wav", tone(22050, 3.0, seed=i)[0], 22050)
    return folder


@pytest.fixture(scope="session")
def run_dir(audio_data, tmp_path_factory) -> Path:
    """A tiny model trained for 2 steps, then resumed to 3 (the last one adversarial)."""
    run = tmp_path_factory.mktemp("audio_run")
    kwargs = dict(minutes=5, batch=2, seconds=0.2, cfg=TINY, log_every=1, val=str(audio_data), val_every=3,
                  adversarial_after=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains fastest on one thread, above all on a busy machine
    try:
        train([str(audio_data)], str(run), steps=2, **kwargs)
        train([str(audio_data)], str(run), steps=3, **kwargs)
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="session", autouse=True)
def model_path(run_dir, tmp_path_factory) -> Path:
    """The trained tiny model exported into a folder on NCODEC_MODEL_PATH, and made the default audio
    model of this process (in place of the shipped one, for speed), for the whole session."""
    import ncodec.zoo

    folder = tmp_path_factory.mktemp("audio_models")
    model, training = load_checkpoint_model(run_dir / "checkpoint.safetensors")
    path = export(model, folder / "tiny-audio.safetensors", MODEL_ID, training)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NCODEC_MODEL_PATH", str(folder))
        mp.setitem(ncodec.zoo.DEFAULT_MODELS, "audio", MODEL_ID)
        yield path


def cli(*args):
    return subprocess.run([sys.executable, "-m", "ncodec.cli.main", *map(str, args)], capture_output=True)


def test_training_logs_resumes_and_validates_every_bitrate(run_dir):
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert [("adv" in r, "feat" in r) for r in records if "loss" in r][1:] == [(False, False), (True, True)]
    val = next(r["val"] for r in records if "val" in r)
    assert val["kbps"] == [1.5, 3.0, 6.0, 12.0, 24.0] and len(val["si_sdr"]) == len(val["mel"]) == 5
    training = load_checkpoint_model(run_dir / "checkpoint.safetensors")[1]
    assert training["steps"] == 3 and training["hardware"] == f"CPU: {cpu_model()}, 1 threads"


def test_bitrates_select_two_to_thirty_two_stages():
    assert bitrates(AudioModelConfig()) == {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}
    assert AudioModelConfig().frame_rate == 75


def test_integer_decoder_matches_the_float_decoder(model_path):
    coding, float_model = load_coding_model(model_path), load_float_model(model_path).eval()
    codes = torch.randint(0, TINY.codebook_size, (1, 150, 8))
    x_int = coding.decoder(coding.latent(codes)) * 2.0**-ACT_BITS
    with torch.no_grad():
        x_float = float_model.decoder(float_model.rvq.decode(codes).float())
    assert (x_int - x_float).abs().max() < 1e-2 * max(float(x_float.abs().max()), 1e-3)


def test_float_model_resumes_from_the_model_file(model_path):
    model = load_float_model(model_path)
    out = model(torch.from_numpy(tone(24000, 0.4)[None, :, :9600]), n_stages=4)
    assert out["x_hat"].shape == (1, 1, 9600) and bool(model.rvq.initted)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
def test_round_trip_keeps_rate_channels_and_exact_length(rate, channels):
    x = tone(rate, 0.37, channels)
    y, out_rate = decode_audio(encode_audio(x, rate, 6.0))
    assert out_rate == rate and y.shape == x.shape and y.dtype == np.float32


@pytest.mark.parametrize("x", [np.full((1, 1), 0.5, np.float32), np.zeros((2, 30000), np.float32),
                               np.clip(tone(16000, 0.5) * 8, -1, 1) + 0.3, tone(16000, 0.5) * 5],
                         ids=["one-sample", "silence", "clipped-with-dc", "beyond-full-scale"])
def test_edge_signals_round_trip(x):
    y, rate = decode_audio(encode_audio(x, 16000, 3.0))
    assert y.shape == x.shape and rate == 16000 and np.isfinite(y).all() and np.abs(y).max() <= 1


@pytest.mark.parametrize("x, message", [
    (np.array([[0.1, np.nan, 0.2]], np.float32), "NaN"),
    (np.array([[0.1, np.inf]], np.float32), "NaN or infinite"),
    (np.zeros((1, 0), np.float32), "empty"),
    (np.zeros((3, 100), np.float32), "mono and stereo"),
])
def test_bad_input_is_refused_clearly(x, message):
    with pytest.raises(AudioError, match=message):
        encode_audio(x, 24000)


def test_unsupported_rate_and_bitrate_are_refused():
    with pytest.raises(AudioError, match="sample rate"):
        encode_audio(tone(8000, 0.1), 96000)
    with pytest.raises(AudioError, match="bitrate must be one of"):
        encode_audio(tone(8000, 0.1), 8000, 5.0)


def test_missing_audio_model_is_one_clear_line(monkeypatch, tmp_path):
    import ncodec.zoo

    monkeypatch.setenv("NCODEC_MODEL_PATH", "")
    monkeypatch.setattr(ncodec.zoo, "ZOO_DIR", tmp_path)  # no shipped models either
    with pytest.raises(AudioError, match="no audio model installed; train one with `ncodec train audio"):
        encode_audio(tone(8000, 0.1), 8000)


def test_higher_bitrate_costs_more_bytes():
    x = tone(24000, 1.5)
    sizes = [len(encode_audio(x, 24000, kbps)) for kbps in (1.5, 6.0, 24.0)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3


def test_decoding_is_bit_exact_across_runs_and_thread_counts():
    data = encode_audio(tone(44100, 1.2, 2), 44100, 12.0)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = decode_audio(data)[0]
        torch.set_num_threads(2)
        two = decode_audio(data)[0]
    finally:
        torch.set_num_threads(before)
    assert one.tobytes() == two.tobytes() == decode_audio(data)[0].tobytes()


def test_chunked_decoding_equals_whole_signal_integer_decoding(model_path):
    """Chunks decoded with their margins give exactly the whole-signal decoder output."""
    data = encode_audio(tone(24000, 2.6), 24000, 6.0, MODEL_ID)
    dec = AudioDecoder(data)
    model = load_coding_model(model_path)
    latent = torch.cat([dec._latent(c) for c in range(dec.params.chunks(model.cfg))], 2)
    whole = (model.decoder(latent)[0, 0] * 8).clamp(-32768, 32767).to(torch.int16).numpy()
    y, _ = decode_audio(data)
    assert np.array_equal(np.round(y[0] * 32768).astype(np.int16), whole[: y.shape[1]])


@pytest.mark.parametrize("rate, channels", [(24000, 1), (44100, 2), (8000, 1)])
def test_start_and_duration_decode_the_same_samples_from_only_some_chunks(rate, channels, monkeypatch):
    data = encode_audio(tone(rate, 4.6, channels), rate, 6.0)
    full, _ = decode_audio(data)
    used = []
    original = AudioDecoder._latent
    monkeypatch.setattr(AudioDecoder, "_latent", lambda self, c: used.append(c) or original(self, c))
    part, _ = decode_audio(data, start=2.25, duration=0.5)
    a = round(2.25 * rate)
    assert np.array_equal(part, full[:, a : a + round(0.5 * rate)])
    assert set(used) == {1, 2, 3}  # of chunks 0..4: chunk 2 and its neighbours' context frames
    tail, _ = decode_audio(data, start=4.0)
    assert np.array_equal(tail, full[:, round(4.0 * rate):])


def test_seek_index_has_one_entry_per_chunk():
    data = encode_audio(tone(24000, 2.5), 24000)
    _, chunks = ct.read_container(data, (b"RVQC", ct.SEEK))
    codes = [c for c in chunks if c.type == b"RVQC"]
    (seek,) = [c for c in chunks if c.type == ct.SEEK]
    assert ct.decode_seek_index(seek.data) == [(i * 24000, c.offset) for i, c in enumerate(codes)]


def test_length_claim_without_the_chunks_for_it_is_refused():
    data = encode_audio(tone(24000, 0.5), 24000)
    header, chunks = ct.read_container(data, (b"RVQC", ct.SEEK))
    p = AudioParams.unpack(header.params)
    huge = AudioParams(p.sample_rate, p.channels, p.bit_depth, 24000 * 3600, p.stages)
    forged = ct.write_container(ct.Header(header.modality, header.model_id, header.weights_hash, huge.pack()),
                                [(c.type, c.data) for c in chunks if c.type == b"RVQC"])
    with pytest.raises(AudioError, match="code chunks"):
        decode_audio(forged)
    too_long = AudioParams(p.sample_rate, p.channels, p.bit_depth, 24000 * 86400 + 1, p.stages)
    with pytest.raises(ct.ContainerError, match="exceeds limit"):
        AudioParams.unpack(too_long.pack())


@pytest.mark.parametrize("suffix, subtype", [(".flac", "PCM_16"), (".wav", "PCM_24")])
def test_cli_encodes_and_decodes_audio_files(tmp_path, suffix, subtype):
    src, ncz, out = tmp_path / f"talk{suffix}", tmp_path / "talk.ncz", tmp_path / f"out{suffix}"
    sf.write(src, tone(22050, 1.3, 2).T, 22050, subtype=subtype)
    assert cli("encode", src, "-o", ncz, "--bitrate", 6).returncode == 0
    assert cli("decode", ncz, "-o", out).returncode == 0
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (22050, 2, 28665, subtype)
    part = tmp_path / "part.wav"
    assert cli("decode", ncz, "-o", part, "--start", 0.5, "--duration", 0.25).returncode == 0
    assert sf.info(part).frames == round(0.25 * 22050)
    described = json.loads(cli("info", ncz, "--json").stdout)
    assert described["modality"] == "audio" and described["sample_rate"] == 22050
    assert described["channels"] == 2 and described["samples"] == 28665


def test_cli_refuses_damaged_files_and_misplaced_flags(tmp_path):
    src, ncz, out = tmp_path / "a.wav", tmp_path / "a.ncz", tmp_path / "out.wav"
    sf.write(src, tone(16000, 1.2)[0], 16000)
    assert cli("encode", src, "-o", ncz, "--quality", 3).returncode == 2
    assert cli("encode", src, "-o", ncz).returncode == 0
    data = ncz.read_bytes()
    for damaged in (data[: len(data) // 2], data[:40] + bytes([data[40] ^ 4]) + data[41:]):
        ncz.write_bytes(damaged)
        res = cli("decode", ncz, "-o", out)
        assert res.returncode == 1 and res.stderr.count(b"\n") == 1 and not out.exists()
    ncz.write_bytes(data)
    assert cli("decode", ncz, "-o", out, "--start", 5).returncode == 1 and not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["a.ncz", "a.wav"]  # no temporary files left behind


def test_mutated_payloads_with_valid_crcs_fail_cleanly_or_decode():
    """Forged files (valid CRCs, damaged code payloads) never crash the decoder."""
    data = encode_audio(tone(16000, 0.6), 16000, 3.0)
    header, chunks = ct.read_container(data, (b"RVQC", ct.SEEK))
    rng = np.random.default_rng(7)
    for _ in range(10):
        body = [(c.type, bytearray(c.data)) for c in chunks if c.type == b"RVQC"]
        payload = body[rng.integers(len(body))][1]
        for pos in rng.integers(0, len(payload), 3):
            payload[pos] = rng.integers(256)
        forged = ct.write_container(header, [(t, bytes(b)) for t, b in body])
        try:
            y, _ = decode_audio(forged)
            assert y.shape == (1, 9600)
        except AudioError:
            pass


def test_python_api_encodes_paths_arrays_and_decodes_by_modality(tmp_path):
    import ncodec

    x = tone(16000, 0.5, 2)
    path = tmp_path / "clip.flac"
    sf.write(path, x.T, 16000, subtype="PCM_16")
    from_path = ncodec.encode(path, bitrate=3)
    from_array = ncodec.encode(x, bitrate=3, sample_rate=16000)
    assert ncodec.info(from_path)["modality"] == "audio"
    decoded = ncodec.decode(from_path)
    assert isinstance(decoded, ncodec.Audio) and decoded.sample_rate == 16000
    assert decoded.samples.shape == x.shape
    assert ncodec.decode(from_array).samples.shape == x.shape
    assert len(ncodec.encode(x, sample_rate=16000)) > len(ncodec.encode(x, bitrate=1.5, sample_rate=16000))
    part = ncodec.decode_audio(from_path, start=0.25, duration=0.1)
    assert part.samples.shape == (2, 1600)
    with pytest.raises(ValueError, match="sample_rate"):
        ncodec.encode_audio(x)
    with pytest.raises(ValueError, match="use bitrate"):
        ncodec.encode(x, quality=3, sample_rate=16000)


def test_codebooks_are_stored_as_int16_with_per_stage_shifts():
    from ncodec.fixed_point import join_codebooks, split_codebooks

    embed = (torch.rand(3, 16, 4) * 2 - 1) * torch.tensor([0.5, 7.9, 90.0])[:, None, None]
    embed[:, 0, 0] = torch.tensor([0.5, -7.9, 90.0])  # int16 at 12 bits, 11x beyond
    stored, shift = split_codebooks(embed)
    assert stored.dtype == torch.int16 and shift.tolist() == [0, 0, 4]
    joined = join_codebooks({"dec.codebooks": stored, "dec.codebook_shift": shift})
    error = (joined.double() / 2**ACT_BITS - embed.double()).abs().amax((1, 2))
    assert (error <= 2.0 ** (shift.double() - ACT_BITS - 1) + 1e-9).all()


def test_default_model_file_fits_the_size_budget(tmp_path):
    model = AudioCodecModel(AudioModelConfig())
    size = export(model, tmp_path / "default.safetensors", "size-check").stat().st_size
    assert size < 15e6, f"default audio model file is {size / 1e6:.1f} MB"


@pytest.mark.parametrize("kbps", [1.5, 6.0, 24.0])
@pytest.mark.parametrize("seconds", [0.3, 1.0, 4.0])
def test_bitrate_is_the_files_ceiling_for_mono_and_stereo(kbps, seconds):
    """The file, container included, never exceeds the bitrate: stereo splits the stages between
    mid and side, and a stage is dropped where the container would push the file over."""
    for channels in (1, 2):
        nominal = bitrates(TINY)[kbps] // channels
        data = encode_audio(tone(24000, seconds, channels), 24000, kbps)
        stages = AudioDecoder(data).params.stages
        assert len(data) * 8 / seconds / 1000 <= kbps or stages == 1
        assert 1 <= stages <= nominal
        if seconds == 4.0 and kbps >= 6:
            assert stages >= nominal - 2  # only the container's share is given up


def test_clip_sampler_weights_folders_equally(tmp_path):
    """Twenty clips in one folder and one in another: crops come from each folder about half the
    time (a clip-uniform sampler would take the lone clip 1 time in 21)."""
    from ncodec.train_audio import ClipSampler

    many, one = tmp_path / "many", tmp_path / "one"
    many.mkdir()
    one.mkdir()
    t = np.arange(8000) / 8000
    for i in range(20):
        sf.write(many / f"{i}.wav", 0.4 + 0.1 * np.sin(2 * np.pi * 5 * t + i), 8000)
    sf.write(one / "0.wav", -0.4 - 0.1 * np.sin(2 * np.pi * 5 * t), 8000)
    sampler = ClipSampler([str(tmp_path)], 8000, 800, np.random.default_rng(0))
    assert sorted(len(g) for g in sampler.groups) == [1, 20]
    lone = np.mean([sampler._crop().mean() < 0 for _ in range(600)])
    assert 0.42 < lone < 0.58


def test_fine_tuning_records_the_model_it_started_from(model_path, audio_data, tmp_path):
    """A run started with `init` keeps the start file's id, hash and provenance, also when resumed,
    and its export carries them."""
    from ncodec.zoo import file_sha256
    from safetensors import safe_open

    kwargs = dict(minutes=5, batch=2, seconds=0.2, log_every=1, init=str(model_path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train([str(audio_data)], str(tmp_path / "ft"), steps=1, **kwargs)
        ckpt = train([str(audio_data)], str(tmp_path / "ft"), steps=2, **kwargs)
    finally:
        torch.set_num_threads(threads)
    model, training = load_checkpoint_model(ckpt)
    init = training["init"]
    assert training["steps"] == 2 and init["id"] == MODEL_ID and init["sha256"] == file_sha256(model_path)
    assert init["training"]["steps"] == 3  # the start model's own provenance
    out = export(model, tmp_path / "ft.safetensors", "ft", training)
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["training"])["init"] == init
