"""Image <-> .ncz bytes with a shipped hyperprior model.

Encode: pixels -> g_a (tiled) -> y * gain -> h_a -> z (rounded, factorized tables)
-> exact h_s -> (mean, scale index) -> y symbols (one chunk per latent tile) -> container.
Decode mirrors it with integer arithmetic only, so the output bytes never depend on the
machine. Layout of the HEAD params and chunks: bitstream_spec/SPEC.md section 5.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from ncodec.entropy import coder
from PIL import Image, ImageOps

from . import container as ct
from . import image_rvq
from .fixed_point import ACT_BITS, ACT_LIMIT, run_tiled
from .image_rvq import RVQImageCodingModel
from .image_weights import GAIN_BITS, ImageCodingModel, load_coding_model
from .zoo import ModelInfo, find, find_by_hash

PARAMS = struct.Struct(">IIBBH")  # width, height, mode, bit depth, quality (1/256 steps above 1)
MODES = {1: "L", 2: "RGB", 3: "RGBA", 4: "LA"}
MODE_CODES = {v: k for k, v in MODES.items()}
CHUNK_Z, CHUNK_Y, CHUNK_ALPHA = b"ZLAT", b"YLAT", b"ALPH"
KNOWN_CHUNKS = (CHUNK_Z, CHUNK_Y, CHUNK_ALPHA)
Progress = Callable[[str, int, int], None]  # (stage, done, total)
MAX_SIDE = 1 << 16
MAX_PIXELS = 100_000_000
ALIGN = 64  # the model downsamples by 64 (y by 16, z by 4 more)
Y_TILE = 64  # latent tile per YLAT chunk (1024x1024 pixels)
QUALITY_STEPS = 256
SYMBOL_LIMIT = 1 << 20  # decoded symbols are clamped to +-SYMBOL_LIMIT
REFINE_TILE = 32  # latent tile refined at once (512x512 pixels), with a margin of context
REFINE_MARGIN = 4
DEFAULT_REFINE = 20  # refinement steps when the caller names none (images, video inter frames)
DEFAULT_REFINE_MAX_PIXELS = 4_000_000  # above this, no refinement unless asked (encode time)


def refine_steps(refine: int | None, width: int, height: int, default: int = DEFAULT_REFINE) -> int:
    """The refinement steps to run: `refine` when given (checked), else `default` for images up
    to DEFAULT_REFINE_MAX_PIXELS and 0 above (refining costs ~1 s per step per megapixel on two
    cores)."""
    if refine is None:
        return default if width * height <= DEFAULT_REFINE_MAX_PIXELS else 0
    if not isinstance(refine, int) or not 0 <= refine <= 1000:
        raise ImageError(f"refine steps must be an integer within 0..1000, got {refine}")
    return refine


class ImageError(ValueError):
    """An image that cannot be encoded, or a file that cannot be decoded."""


@dataclass(frozen=True)
class ImageParams:
    width: int
    height: int
    mode: str
    quality_fx: int  # (quality - 1) * 256

    def pack(self) -> bytes:
        return PARAMS.pack(self.width, self.height, MODE_CODES[self.mode], 8, self.quality_fx)

    @classmethod
    def unpack(cls, data: bytes, levels: int) -> ImageParams:
        if len(data) < PARAMS.size:
            raise ImageError("image parameters too short")
        w, h, mode, depth, q = PARAMS.unpack_from(data)
        if mode not in MODES or depth != 8:
            raise ImageError(f"unsupported image mode {mode} / bit depth {depth}")
        for name, v in (("width", w), ("height", h)):
            if not 1 <= v <= MAX_SIDE:
                raise ImageError(f"image {name} {v} outside 1..{MAX_SIDE}")
        ct.check_claim("image pixels", w * h, MAX_PIXELS)
        if q > (levels - 1) * QUALITY_STEPS:
            raise ImageError(f"quality {q / QUALITY_STEPS + 1:.2f} outside this model's range")
        return cls(w, h, MODES[mode], q)

    @property
    def padded(self) -> tuple[int, int]:
        return -(-self.height // ALIGN) * ALIGN, -(-self.width // ALIGN) * ALIGN

    def y_tiles(self) -> list[tuple[int, int, int, int]]:
        hp, wp = self.padded
        ly, lx = hp // 16, wp // 16
        return [(y, min(y + Y_TILE, ly), x, min(x + Y_TILE, lx))
                for y in range(0, ly, Y_TILE) for x in range(0, lx, Y_TILE)]


def split_alpha(image: Image.Image) -> tuple[str, Image.Image, bytes | None]:
    """Normalise a Pillow image to (mode kept, RGB to code, alpha plane or None)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise ImageError(f"{image.mode} images (16/32-bit) are not supported; convert to 8-bit")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode not in MODE_CODES:
        image = image.convert("RGB")
    alpha = image.getchannel("A").tobytes() if image.mode in ("RGBA", "LA") else None
    return image.mode, image.convert("RGB"), alpha


def _gain(model: ImageCodingModel, q: int) -> torch.Tensor:
    lo, t = divmod(q, QUALITY_STEPS)
    hi = min(lo + 1, model.cfg.levels - 1)
    w = t / QUALITY_STEPS
    return ((1 - w) * model.log_gain[lo] + w * model.log_gain[hi]).exp().view(1, -1, 1, 1)


def _inverse_gain(model: ImageCodingModel, q: int) -> torch.Tensor:
    """Integer interpolation of the inverse gains (GAIN_BITS fraction)."""
    lo, t = divmod(q, QUALITY_STEPS)
    hi = min(lo + 1, model.cfg.levels - 1)
    inv = (model.inv_gain[lo] * (QUALITY_STEPS - t) + model.inv_gain[hi] * t) // QUALITY_STEPS
    return inv.view(1, -1, 1, 1)


def _hyper(model: ImageCodingModel, z_sym: torch.Tensor) -> torch.Tensor:
    """h_s's exact output [1, 2M, 4h, 4w] (int32: means, then raw scales; ACT_BITS fraction)
    from integer z symbols."""
    _, _, h, w = z_sym.shape
    out = torch.empty(1, 2 * model.cfg.m, 4 * h, 4 * w, dtype=torch.int32)
    return run_tiled(model.h_s, z_sym.double() * 2.0**ACT_BITS, 4, tile=32, margin=2, out=out)


SliceCoder = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
SliceFinisher = Callable[[slice, torch.Tensor], torch.Tensor]


def _code_slices(model: ImageCodingModel, hyper: torch.Tensor, code: SliceCoder, out: torch.Tensor,
                 finish: SliceFinisher, context: bool = True) -> torch.Tensor:
    """Walk the latent's channel slices in coding order (one slice without a channel context, or
    with context=False).

    For slice s, its exact means (int64, ACT_BITS fraction) and scale indices come from `hyper`
    (h_s's output [1, 2M, h, w]: means, then raw scales) and, through the context net, the slices
    decoded before it; `code(s, mean, index)` encodes or decodes the slice's symbols and returns
    their decoded values q (int64, `symbol_values`). `finish(channels, q)` turns them into what
    `out` [1, M, h, w] keeps (e.g. y_hat after the inverse gains), so only one slice is ever held
    at 64 bits. Returns `out`.
    """
    context = context and bool(model.context)
    m, slices = model.cfg.m, model.cfg.context_slices if context else 1
    width = m // slices
    limit = int(ACT_LIMIT)
    decoded: list[torch.Tensor] = []  # int32, clamped: the context nets' inputs
    for s in range(slices):
        part = slice(s * width, (s + 1) * width)
        mean, scale = hyper[:, part].long(), hyper[:, m:][:, part].long()
        if context:
            inputs = torch.cat([hyper[:, part], hyper[:, m:][:, part], *decoded], 1)
            delta = torch.empty(1, 2 * width, *mean.shape[2:], dtype=torch.int32)
            net = model.context[s]
            run_tiled(lambda t, net=net: net(t.double()), inputs, 1, tile=64, margin=model.context_margin,
                      out=delta)
            mean = (mean + delta[:, :width]).clamp_(-limit, limit)
            scale = scale + delta[:, width:]
        index = torch.searchsorted(model.thresholds, scale.double().reshape(-1), right=True)
        q = code(s, mean, index.view(scale.shape).to(torch.uint8))
        out[:, part] = finish(part, q)
        if context:
            decoded.append(q.clamp(-limit, limit).int())
    return out


def symbol_values(sym: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """The decoded values of symbols coded around `mean`: clamp(sym) * 2^ACT_BITS + mean (int64)."""
    return sym.clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT) * (1 << ACT_BITS) + mean


def _dequantized(model: ImageCodingModel, inv: torch.Tensor) -> SliceFinisher:
    """`_code_slices`' finisher for y_hat: q times the inverse gains `inv` [1, M, 1, 1], int32."""
    limit = int(ACT_LIMIT)
    return lambda part, q: ((q * inv[:, part]) >> GAIN_BITS).clamp_(-limit, limit).int()


def _latent_out(model: ImageCodingModel, hyper: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(1, model.cfg.m, *hyper.shape[2:], dtype=dtype)


def latent_symbols(y: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """The symbols round(y - mean) of a scaled latent y given exact means (ACT_BITS fraction)."""
    return torch.round(y.double() - mean.double() * 2.0**-ACT_BITS).long()


def _tile_masks(tiles: list[tuple[int, int, int, int]], shape: tuple[int, int],
                keep: torch.Tensor | None) -> list[torch.Tensor]:
    """Per latent tile, a boolean mask [h, w] of the positions it codes: the tile's (all of them,
    or those in `keep`), so t[..., mask] lists them in the tile's row-major order."""
    masks = []
    for y0, y1, x0, x1 in tiles:
        mask = torch.zeros(shape, dtype=torch.bool)
        mask[y0:y1, x0:x1] = True if keep is None else keep[y0:y1, x0:x1]
        masks.append(mask)
    return masks


def _slice_encoder(model: ImageCodingModel, y: torch.Tensor, tiles: list[tuple[int, int, int, int]],
                   payloads: list[bytes], keep: torch.Tensor | None = None,
                   previous: torch.Tensor | None = None) -> SliceCoder:
    """`_code_slices`' coder of the scaled latent y [1, M, h, w]: each slice's symbols
    round(y - mean), appended to `payloads` one range-coded payload per latent tile. With a mask
    `keep` [h, w] only those positions are coded; the others take the `previous` latent's values."""
    masks = _tile_masks(tiles, tuple(y.shape[2:]), keep)

    def encode_slice(s: int, mean: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        part = slice(s * mean.shape[1], (s + 1) * mean.shape[1])
        sym = latent_symbols(y[:, part], mean)
        for mask in masks:
            payloads.append(coder.encode(sym[..., mask].numpy(), index[..., mask].numpy(), model.y_tables))
        q = symbol_values(sym, mean)
        return q if keep is None else torch.where(keep, q, previous[:, part].long())

    return encode_slice


def _slice_decoder(model: ImageCodingModel, tiles: list[tuple[int, int, int, int]], payloads: Iterator[bytes],
                   keep: torch.Tensor | None = None, previous: torch.Tensor | None = None) -> SliceCoder:
    """`_code_slices`' coder that decodes each slice's symbols from the next payloads, one per tile
    (with `keep`, only at those positions; the others take the `previous` latent's values)."""

    def decode_slice(s: int, mean: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        part = slice(s * mean.shape[1], (s + 1) * mean.shape[1])
        q = torch.empty(mean.shape, dtype=torch.long) if keep is None else previous[:, part].long()
        for mask in _tile_masks(tiles, tuple(mean.shape[2:]), keep):
            idx = index[..., mask]
            sym = torch.from_numpy(coder.decode(next(payloads), idx.numpy(), model.y_tables)).view(idx.shape)
            q[..., mask] = symbol_values(sym, mean[..., mask])
        return q

    return decode_slice


def _z_index(z: torch.Tensor) -> np.ndarray:
    c = z.shape[1]
    return np.repeat(np.arange(c), z[0, 0].numel())


def _stage(progress: Progress | None, name: str) -> Callable[[int, int], None] | None:
    return (lambda done, total: progress(name, done, total)) if progress else None


def encode_image(
    image: Image.Image, quality: float = 4.0, model_id: str | None = None,
    progress: Progress | None = None, refine: int | None = None,
) -> bytes:
    """Compress a Pillow image; quality from 1 (smallest) to the model's level count (best).

    refine: steps of encoder-side latent refinement (0 = off; None: `refine_steps`' default);
    same decoder, better RD, slower.
    """
    info = find(model_id, "image")
    model = _load(info)
    if not 1 <= quality <= model.cfg.levels:
        raise ImageError(f"quality must be within 1..{model.cfg.levels}, got {quality}")
    if refine and isinstance(model, RVQImageCodingModel):
        raise ImageError(f"--refine needs a hyperprior model; {info.model_id} is an RVQ-latent model")
    mode, rgb, alpha = split_alpha(image)
    refine = 0 if isinstance(model, RVQImageCodingModel) else refine_steps(refine, rgb.width, rgb.height)
    params = ImageParams(rgb.width, rgb.height, mode, round((quality - 1) * QUALITY_STEPS))
    if rgb.width > MAX_SIDE or rgb.height > MAX_SIDE or rgb.width * rgb.height > MAX_PIXELS:
        raise ImageError(f"image {rgb.width}x{rgb.height} exceeds the {MAX_PIXELS} pixel limit")
    hp, wp = params.padded
    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float().div_(255)
    x = F.pad(x, (0, wp - rgb.width, 0, hp - rgb.height), mode="replicate")
    if isinstance(model, RVQImageCodingModel):
        with torch.inference_mode():
            y = image_rvq.analysis(model, x, _stage(progress, "analysis"))
        stages = image_rvq.stages_for_quality(params.quality_fx, model.cfg, QUALITY_STEPS)
        chunks = [(CHUNK_Y, c) for c in image_rvq.encode_tiles(model, y, stages, params.y_tiles())]
    else:
        chunks = _hyperprior_chunks(info.path, model, x, params, refine, progress)
    if alpha is not None:
        chunks.append((CHUNK_ALPHA, zlib.compress(alpha, 9)))
    header = ct.Header(ct.Modality.IMAGE, info.model_id, info.weights_hash, params.pack())
    return ct.write_container(header, chunks)


def _load(info: ModelInfo) -> ImageCodingModel | RVQImageCodingModel:
    if info.format == image_rvq.FORMAT:
        return image_rvq.load_coding_model(info.path)
    return load_coding_model(info.path)


def _hyperprior_chunks(path, model: ImageCodingModel, x: torch.Tensor, params: ImageParams, refine: int,
                       progress: Progress | None) -> list[tuple[bytes, bytes]]:
    """ZLAT and YLAT chunks of a padded image x [1, 3, H, W] in [0, 1]."""
    hp, wp = params.padded
    m = model.cfg.m
    with torch.inference_mode():
        y = run_tiled(model.g_a, x, 1 / 16, tile=1024, margin=model.analysis_margin,
                      out=torch.empty(1, m, hp // 16, wp // 16), progress=_stage(progress, "analysis"))
        y = y * _gain(model, params.quality_fx)
        z = run_tiled(model.h_a, y, 1 / 4, tile=256, margin=16,
                      out=torch.empty(1, model.cfg.n, hp // 64, wp // 64))
        z_sym = torch.round(z).long()
        hyper = _hyper(model, z_sym)
    if refine > 0:
        y = _refine(path, model, x, y, hyper.double() * 2.0**-ACT_BITS, params.quality_fx, refine, progress)
    payloads: list[bytes] = []
    inv = _inverse_gain(model, params.quality_fx)
    _code_slices(model, hyper, _slice_encoder(model, y, params.y_tiles(), payloads),
                 _latent_out(model, hyper, torch.int32), _dequantized(model, inv))
    z_payload = coder.encode(z_sym.numpy(), _z_index(z_sym), model.z_tables)
    return [(CHUNK_Z, z_payload), *((CHUNK_Y, p) for p in payloads)]


def _with_margin(y0: int, y1: int, x0: int, x1: int, shape: torch.Size) -> tuple[int, int, int, int]:
    """Latent rows y0:y1, columns x0:x1 widened by REFINE_MARGIN of context within `shape`'s last two."""
    return (max(y0 - REFINE_MARGIN, 0), min(y1 + REFINE_MARGIN, shape[-2]),
            max(x0 - REFINE_MARGIN, 0), min(x1 + REFINE_MARGIN, shape[-1]))


def _refine(path, model: ImageCodingModel, x: torch.Tensor, y: torch.Tensor, hyper: torch.Tensor,
            quality_fx: int, steps: int, progress: Progress | None, context: bool = True,
            region: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """Encoder-side refinement of y in latent tiles (bounded memory), z and so h_s's output
    `hyper` (float, [1, 2M, h, w]) unchanged; `context` as `refine_latent`'s. `region` (rows y0:y1,
    columns x0:x1 of latents) refines only those, seeing a margin of context around them."""
    from .image_refine import refine_latent

    if region is not None:
        a0, a1, b0, b1 = _with_margin(*region, y.shape)
        window = (..., slice(a0, a1), slice(b0, b1))
        part = _refine(path, model, x[..., 16 * a0:16 * a1, 16 * b0:16 * b1], y[window], hyper[window],
                       quality_fx, steps, progress, context)
        y0, y1, x0, x1 = region
        out = y.clone()
        out[..., y0:y1, x0:x1] = part[..., y0 - a0:y1 - a0, x0 - b0:x1 - b0]
        return out
    inv = _inverse_gain(model, quality_fx).float() * 2.0**-GAIN_BITS
    quality = 1 + quality_fx / QUALITY_STEPS
    out = y.clone()
    tiles = [(y0, min(y0 + REFINE_TILE, y.shape[2]), x0, min(x0 + REFINE_TILE, y.shape[3]))
             for y0 in range(0, y.shape[2], REFINE_TILE) for x0 in range(0, y.shape[3], REFINE_TILE)]
    for i, (y0, y1, x0, x1) in enumerate(tiles):
        a0, a1, b0, b1 = _with_margin(y0, y1, x0, x1, y.shape)
        window = (..., slice(a0, a1), slice(b0, b1))
        refined = refine_latent(path, x[..., 16 * a0:16 * a1, 16 * b0:16 * b1], out[window],
                                hyper[window].float(), inv, quality, steps, context=context)
        out[..., y0:y1, x0:x1] = refined[..., y0 - a0:y1 - a0, x0 - b0:x1 - b0]
        if progress:
            progress("refine", i + 1, len(tiles))
    return out


def _to_pixels(x: torch.Tensor) -> torch.Tensor:
    half = 2.0 ** (ACT_BITS - 1)
    return torch.floor((x * 255 + half) * 2.0**-ACT_BITS).clamp_(0, 255)


def decode_image(data: bytes, progress: Progress | None = None) -> Image.Image:
    """Decompress .ncz bytes to a Pillow image of the original size and mode."""
    header, chunks = ct.read_container(data, KNOWN_CHUNKS)
    if header.modality != ct.Modality.IMAGE:
        raise ImageError(f"this is a {header.modality.name.lower()} file, not an image")
    info = find_by_hash(header.model_id, header.weights_hash)
    model = _load(info)
    p = ImageParams.unpack(header.params, model.cfg.levels)
    by_type = {t: [c.data for c in chunks if c.type == t] for t in KNOWN_CHUNKS}
    tiles = p.y_tiles()
    want_alpha = p.mode in ("RGBA", "LA")
    rvq = isinstance(model, RVQImageCodingModel)
    slices = 1 if rvq else max(model.cfg.context_slices, 1)
    if (len(by_type[CHUNK_Z]), len(by_type[CHUNK_Y]), len(by_type[CHUNK_ALPHA])) != (
            int(not rvq), slices * len(tiles), int(want_alpha)):
        raise ImageError("file does not hold the chunks its image size requires")
    hp, wp = p.padded
    try:
        if rvq:
            stages = image_rvq.stages_for_quality(p.quality_fx, model.cfg, QUALITY_STEPS)
            y_hat = image_rvq.decode_latent(model, by_type[CHUNK_Y], stages, tiles, (hp // 16, wp // 16))
        else:
            y_hat = _hyperprior_latent(model, by_type, p)
    except coder.DecodeError as err:
        raise ImageError(str(err)) from None
    pixels = torch.empty(1, 3, hp, wp, dtype=torch.uint8)
    run_tiled(lambda t: _to_pixels(model.g_s(t.double())), y_hat, 16, tile=24, margin=model.synthesis_margin,
              out=pixels, progress=_stage(progress, "synthesis"))
    rgb = pixels[0, :, : p.height, : p.width].permute(1, 2, 0).numpy()
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if p.mode in ("L", "LA"):
        image = image.convert("L")
    if want_alpha:
        alpha = _inflate(by_type[CHUNK_ALPHA][0], p.width * p.height)
        image = image.convert(p.mode[:-1] + "A") if p.mode == "LA" else image.convert("RGBA")
        image.putalpha(Image.frombytes("L", (p.width, p.height), alpha))
    return image


def _hyperprior_latent(model: ImageCodingModel, by_type: dict[bytes, list[bytes]],
                       p: ImageParams) -> torch.Tensor:
    """The exact integer latent y_hat [1, M, h, w] of a hyperprior file's ZLAT and YLAT chunks."""
    hp, wp = p.padded
    z_sym = torch.zeros((1, model.cfg.n, hp // 64, wp // 64), dtype=torch.long)
    z_sym.view(-1)[:] = torch.from_numpy(coder.decode(by_type[CHUNK_Z][0], _z_index(z_sym), model.z_tables))
    hyper = _hyper(model, z_sym)
    return _code_slices(model, hyper, _slice_decoder(model, p.y_tiles(), iter(by_type[CHUNK_Y])),
                        _latent_out(model, hyper, torch.int32),
                        _dequantized(model, _inverse_gain(model, p.quality_fx)))


def _inflate(data: bytes, size: int) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, size)
    except zlib.error as err:
        raise ImageError(f"corrupt alpha plane ({err})") from None
    if len(out) != size or d.unconsumed_tail or not d.eof:
        raise ImageError("alpha plane has the wrong size")
    return out
