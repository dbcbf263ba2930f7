"""Resumable, time-bounded training of the RVQ audio model.

Random crops of training files (any rate, resampled to the model rate, mono), random gain and
mixing of two clips; losses: multi-scale mel + multi-resolution STFT + RVQ commitment, and the
bits of the codes under the per-stage categorical prior (which trains only the prior). From step
`adversarial_after` on, a multi-scale STFT discriminator adds hinge and feature-matching losses.
Checkpoints hold the model, the discriminator and both Adam states (safetensors).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import load_file

from .audio_discriminator import MultiScaleSTFTDiscriminator, discriminator_loss, generator_losses
from .audio_losses import mel_loss, si_sdr, stft_loss
from .audio_model import AudioCodecModel, AudioModelConfig, bitrates
from .resample import resample
from .training import (
    CHECKPOINT,
    Part,
    checkpoint_info,
    load_checkpoint,
    module_state,
    note,
    record,
    record_loss,
    resolve_precision,
    save_checkpoint,
)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif"}
COMMIT_WEIGHT = 1.0
BITS_WEIGHT = 1e-3  # the codes are detached: this term trains only the prior's logits
ADV_WEIGHT, FEAT_WEIGHT = 1.0, 2.0


def audio_files(folder: str | Path) -> list[Path]:
    """Audio files under folder (recursive), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


def load_mono(path: Path, rate: int, max_seconds: float | None = None) -> np.ndarray:
    """A file as float32 mono at `rate` (channels averaged), at most max_seconds of it."""
    with sf.SoundFile(str(path)) as f:
        frames = -1 if max_seconds is None else int(max_seconds * f.samplerate)
        x = f.read(frames, dtype="float32", always_2d=True).mean(1)
        return resample(x[None], f.samplerate, rate)[0]


class ClipSampler:
    """Random fixed-length crops with random gain, half of them a mix of two clips.

    Each folder that directly holds audio files is a group; a crop comes from a uniformly chosen
    group, then a uniformly chosen clip of it, so 600 one-second digits do not outweigh 28 long
    speeches, nor hours of synthesised music the few real pieces."""

    def __init__(self, folders: list[str], rate: int, length: int, rng: np.random.Generator):
        paths = [p for f in folders for p in audio_files(f)]
        if not paths:
            raise FileNotFoundError(f"no audio files under {folders}")
        groups: dict[Path, list[np.ndarray]] = {}
        for path in paths:
            clip = load_mono(path, rate)
            if np.abs(clip).max() > 1e-4:
                groups.setdefault(path.parent, []).append(clip)
        if not groups:
            raise FileNotFoundError(f"only silent audio under {folders}")
        self.groups = list(groups.values())
        self.length, self.rng = length, rng
        clips = [c for g in self.groups for c in g]
        seconds = sum(len(c) for c in clips) / rate
        note(f"training on {len(clips)} clips ({seconds / 60:.1f} min) in {len(self.groups)} equally "
             f"weighted folders: " + ", ".join(f"{k.name} {len(v)}" for k, v in groups.items()))

    def _crop(self) -> np.ndarray:
        group = self.groups[self.rng.integers(len(self.groups))]
        clip = group[self.rng.integers(len(group))]
        if len(clip) < self.length:
            clip = np.pad(clip, (0, self.length - len(clip)))
        start = self.rng.integers(len(clip) - self.length + 1)
        crop = clip[start : start + self.length]
        return crop / max(np.abs(crop).max(), 1e-4) * 10 ** self.rng.uniform(-1.5, 0)  # -30..0 dBFS peak

    def batch(self, size: int) -> torch.Tensor:
        out = np.empty((size, 1, self.length), np.float32)
        for i in range(size):
            x = self._crop()
            if self.rng.random() < 0.5:
                x = x + self._crop()
            out[i, 0] = x / max(1.0, np.abs(x).max())
        return torch.from_numpy(out)


def _validation_set(folder: str | None, rate: int, hop: int, seconds: float = 2.0,
                    count: int = 4) -> torch.Tensor | None:
    """The first `seconds` of the first `count` files, mono, cut to whole frames."""
    if not folder:
        return None
    clips = [load_mono(p, rate, seconds) for p in audio_files(folder)[:count]]
    if not clips:
        raise FileNotFoundError(f"no audio files under {folder}")
    length = max(min(len(c) for c in clips) // hop * hop, hop)
    crops = [np.pad(c, (0, max(length - len(c), 0)))[:length] for c in clips]
    return torch.from_numpy(np.stack(crops))[:, None]


@torch.no_grad()
def validate(model: AudioCodecModel, x: torch.Tensor) -> dict[str, list[float]]:
    """Mel distance and SI-SDR (dB) at every bitrate the model offers."""
    model.eval()
    out: dict[str, list[float]] = {"kbps": [], "mel": [], "si_sdr": []}
    for kbps, stages in bitrates(model.cfg).items():
        x_hat = model(x, stages)["x_hat"]
        out["kbps"].append(kbps)
        out["mel"].append(round(float(mel_loss(x_hat, x, model.cfg.sample_rate)), 4))
        out["si_sdr"].append(round(float(si_sdr(x_hat, x).mean()), 2))
    model.train()
    return out


def checkpoint_config(run: Path) -> AudioModelConfig | None:
    """The model config a run's checkpoint was trained with (None without a checkpoint)."""
    path = run / CHECKPOINT
    if not path.exists():
        return None
    return AudioModelConfig.from_dict(checkpoint_info(path)[1]["cfg"])


def load_checkpoint_model(path: str | Path) -> tuple[AudioCodecModel, dict]:
    """The float model of a checkpoint and its provenance (steps, data, seed, hardware, and the
    model file it started from: id, sha256 and that file's own provenance)."""
    steps, info = checkpoint_info(Path(path))
    model = AudioCodecModel(AudioModelConfig.from_dict(info["cfg"]))
    model.load_state_dict(module_state(load_file(str(path)), "model"))
    return model, {"steps": steps, **{k: info.get(k) for k in ("data", "seed", "hardware", "init")}}


def train(
    data: list[str],
    run_dir: str,
    minutes: float,
    steps: int = 10**9,
    batch: int = 16,
    seconds: float = 1.0,
    lr: float = 3e-4,
    seed: int = 0,
    val: str | None = None,
    val_every: int = 1000,
    init: str | None = None,
    cfg: AudioModelConfig | None = None,
    log_every: int = 50,
    adversarial_after: int | None = None,
    precision: str = "auto",
) -> Path:
    """Train until `minutes` or `steps`; resumes from run_dir/checkpoint.safetensors.

    The model config comes from the checkpoint when resuming, else from `init`, else `cfg`.
    adversarial_after: step from which the discriminator trains and its losses apply (None: never).
    precision: "fp32", "bf16" (autocast of the convolutions; the RVQ and losses stay fp32) or "auto"
    (bf16 where the device computes it natively).
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    start_model = init_info = None
    if checkpoint_config(run) is None and init:
        from .audio_weights import load_float_model
        from .zoo import describe

        start_model = load_float_model(init)
        described = describe(Path(init))
        init_info = {"id": described.model_id, "sha256": described.sha256, "training": described.training}
        note(f"initialised from {init}")
    elif (run / CHECKPOINT).exists():
        init_info = checkpoint_info(run / CHECKPOINT)[1].get("init")
    cfg = checkpoint_config(run) or (start_model.cfg if start_model else cfg) or AudioModelConfig()
    model = AudioCodecModel(cfg)
    if start_model is not None:
        model.load_state_dict(start_model.state_dict())
    model.to(device).train()
    amp = resolve_precision(precision, device) == "bf16"
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.9))
    parts = {"model": Part(model, opt, "model_adam")}
    if adversarial_after is not None:
        disc = MultiScaleSTFTDiscriminator().to(device).train()
        opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.9))
        parts["disc"] = Part(disc, opt_d, "disc_adam")
    step = load_checkpoint(run, parts)
    rng = np.random.default_rng(seed + step)
    length = max(round(seconds * cfg.sample_rate) // cfg.hop, 1) * cfg.hop
    sampler = ClipSampler(data, cfg.sample_rate, length, rng)
    val_audio = _validation_set(val, cfg.sample_rate, cfg.hop)
    meta = {"cfg": cfg.as_dict(), "data": data, "seed": seed, "init": init_info}
    log = (run / "log.jsonl").open("a")
    start = time.monotonic()
    last_save = start
    note(f"step {step}: training on {device} ({'bf16 autocast' if amp else 'fp32'}) for {minutes} min")
    while step < steps and time.monotonic() - start < minutes * 60:
        x = sampler.batch(batch).to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        mel, stft = mel_loss(out["x_hat"], x, cfg.sample_rate), stft_loss(out["x_hat"], x)
        loss = mel + stft + COMMIT_WEIGHT * out["commit"] + BITS_WEIGHT * out["bits_per_frame"]
        terms = {"mel": mel, "stft": stft, "commit": out["commit"]}
        adversarial = adversarial_after is not None and step >= adversarial_after
        if adversarial:
            terms["adv"], terms["feat"] = generator_losses(disc, x, out["x_hat"])
            loss = loss + ADV_WEIGHT * terms["adv"] + FEAT_WEIGHT * terms["feat"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        if adversarial:
            terms["disc"] = discriminator_loss(disc, x, out["x_hat"])
            opt_d.zero_grad(set_to_none=True)
            terms["disc"].backward()
            opt_d.step()
        step += 1
        if step % log_every == 0:
            rec = {"step": step, "loss": round(loss.item(), 4),
                   **{k: round(v.item(), 5) for k, v in terms.items()},
                   "stages": int(out["n_stages"]), "bits_per_frame": round(out["bits_per_frame"].item(), 1),
                   "elapsed_s": round(time.monotonic() - start)}
            record_loss(log, rec)
        if val_audio is not None and step % val_every == 0:
            record(log, {"step": step, "val": validate(model, val_audio.to(device))})
        if time.monotonic() - last_save > 300:
            save_checkpoint(run, parts, step, meta)
            last_save = time.monotonic()
    save_checkpoint(run, parts, step, meta)
    note(f"stopped at step {step}; checkpoint in {run}")
    return run / CHECKPOINT
