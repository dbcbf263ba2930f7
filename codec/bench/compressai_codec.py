"""CompressAI image models as bench codecs, their bitstreams carried in the ncodec container.

`compressai:ARCH` is CompressAI's pretrained zoo model ARCH at its qualities 1..8 (CompressAI
downloads the weights). `compressai:ARCH@PATH` is the architecture ARCH with weights the user
trained: PATH is one checkpoint or a folder of them (*.pth, *.pth.tar, *.pt; setting i is the
i-th file in name order). A checkpoint holds a state dict, or a dict with it under "state_dict"
(what CompressAI's examples/train.py saves); its entropy tables are rebuilt after loading.

Every encoded image is an ncodec container (bitstream_spec/SPEC.md section 8): modality image,
model id "compressai.ARCH", weights hash = SHA-256 of the model's state dict, HEAD params =
setting u8, height u16, width u16, latent height u16, latent width u16, then one critical `XSTR`
chunk per entropy-coded string. The bench counts every byte of that file, container included,
as it does for ncodec. compressai is imported only in the worker that runs the codec.
"""

from __future__ import annotations

import hashlib
import struct
from functools import cache
from pathlib import Path

import numpy as np

from ..container import ContainerError, Header, Modality, read_container, write_container
from . import BenchError

PREFIX = "compressai:"
PRETRAINED_QUALITIES = [1, 2, 3, 4, 5, 6, 7, 8]
CHECKPOINT_SUFFIXES = (".pth", ".pth.tar", ".pt")
MISSING = "compressai is not installed; pip install 'ncodec[compressai]'"
STRING = b"XSTR"
PARAMS = struct.Struct(">BHHHH")  # setting, height, width, latent height, latent width


def parse_name(name: str) -> tuple[str, Path | None]:
    """'compressai:ARCH' -> (ARCH, None); 'compressai:ARCH@PATH' -> (ARCH, PATH)."""
    arch, _, path = name[len(PREFIX):].partition("@")
    if not arch:
        raise BenchError("name the compressai model, e.g. compressai:bmshj2018-hyperprior")
    return arch, Path(path) if path else None


def checkpoints(path: Path) -> list[Path]:
    """The checkpoint files a user named: the file itself, or a folder's checkpoints in name order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BenchError(f"no compressai checkpoint at {path}")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(CHECKPOINT_SUFFIXES))
    if not found:
        raise BenchError(f"no checkpoints ({', '.join(CHECKPOINT_SUFFIXES)}) in {path}")
    if len(found) > 255:
        raise BenchError(f"{len(found)} checkpoints in {path}: at most 255")
    return found


def settings(name: str) -> list[int]:
    """Settings swept by default: qualities 1..8 (pretrained) or checkpoint numbers 1..n."""
    _, path = parse_name(name)
    return PRETRAINED_QUALITIES if path is None else list(range(1, len(checkpoints(path)) + 1))


def model_id(arch: str) -> str:
    return "compressai." + arch.lower().replace("_", "-")


def state_hash(net) -> bytes:
    """SHA-256 over the state dict (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for key, t in sorted(net.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes() if t.numel() else b"")
    return h.digest()


def _loader(arch: str, path: Path | None):
    """setting -> eval-mode CompressAI model with updated entropy tables."""
    try:
        import compressai.zoo as zoo
        import torch
        from compressai.zoo.image import model_architectures
    except ImportError:
        raise BenchError(MISSING) from None
    if arch not in model_architectures:
        raise BenchError(f"unknown compressai model {arch!r} (known: {', '.join(model_architectures)})")
    files = None if path is None else checkpoints(path)

    @cache
    def net(setting: int):
        if files is None:
            return zoo.image_models[arch](quality=setting, pretrained=True).eval()
        if not 1 <= setting <= len(files):
            raise BenchError(f"{arch}@{path}: setting {setting} outside 1..{len(files)} (one per checkpoint)")
        saved = torch.load(files[setting - 1], map_location="cpu", weights_only=True)
        state = saved.get("state_dict", saved) if isinstance(saved, dict) else None
        if not isinstance(state, dict):
            raise BenchError(f"{files[setting - 1]}: not a state dict or a dict with 'state_dict'")
        try:
            model = model_architectures[arch].from_state_dict(zoo.load_state_dict(state))
        except (KeyError, RuntimeError) as err:
            raise BenchError(f"{files[setting - 1]} is not a {arch} checkpoint: {err}") from None
        model.update(force=True)
        return model.eval()

    return net


def compressai_codec(name: str):
    """The bench Codec for `compressai:ARCH[@PATH]`."""
    import torch
    import torch.nn.functional as F

    from .codecs import Codec

    arch, path = parse_name(name)
    net = _loader(arch, path)
    mid = model_id(arch)
    weights_hash = cache(lambda setting: state_hash(net(setting)))

    def encode(rgb: np.ndarray, setting) -> bytes:
        h, w = rgb.shape[:2]
        if max(h, w) > 0xFFFF:
            raise BenchError(f"{w}x{h} image: the compressai container stores sizes below 65536")
        x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255
        x = F.pad(x, (0, -w % 64, 0, -h % 64), mode="replicate")  # the models downsample by 64
        model = net(int(setting))
        with torch.no_grad():
            out = model.compress(x)
        params = PARAMS.pack(int(setting), h, w, *out["shape"])
        header = Header(Modality.IMAGE, mid, weights_hash(int(setting)), params)
        return write_container(header, [(STRING, s[0]) for s in out["strings"]])

    def decode(data: bytes) -> np.ndarray:
        header, chunks = read_container(data, known={STRING})
        if header.model_id != mid:
            raise ContainerError(f"made by model {header.model_id!r}, not {mid!r}")
        setting, h, w, lh, lw = PARAMS.unpack(header.params)
        if header.weights_hash != weights_hash(setting):
            raise ContainerError(f"encoded with other {mid} weights (hash {header.weights_hash.hex()[:12]})")
        with torch.no_grad():
            x = net(setting).decompress([[c.data] for c in chunks], torch.Size((lh, lw)))["x_hat"]
        return (x[0, :, :h, :w].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()

    return Codec(encode, decode)
