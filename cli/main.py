"""`ncodec` command line: encode, decode, info, models, doctor, train, bench (images, audio, video).

Exit status: 0 success, 1 bad input (one line on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ncodec import AUDIO_SUFFIXES

EXIT_BAD_INPUT = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


class UsageError(CliError):
    """Options that do not fit the input: printed as one line, exit status 2."""


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise CliError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise CliError(f"is a directory: {path}") from None


@contextmanager
def _atomic_output(path: str, stdout_suffix: str = ".png"):
    """Yield a temp path beside `path`; renamed into place only if the body succeeds."""
    if path == "-":
        fd, tmp = tempfile.mkstemp(suffix=stdout_suffix)
        os.close(fd)
        try:
            yield tmp
            sys.stdout.buffer.write(Path(tmp).read_bytes())
            sys.stdout.buffer.flush()
        finally:
            os.unlink(tmp)
        return
    if Path(path).is_dir():
        raise CliError(f"output is a directory: {path}")
    from ncodec.atomic import atomic_output

    with atomic_output(path) as tmp:
        yield tmp


def _progress():
    """A stderr progress reporter for interactive terminals (None otherwise)."""
    if not sys.stderr.isatty():
        return None

    def report(stage: str, done: int, total: int) -> None:
        if total > 1:
            end = "\n" if done == total else ""
            print(f"\rncodec: {stage} {done}/{total} tiles", end=end, file=sys.stderr, flush=True)

    return report


def _open_image(data: bytes, name: str):
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CliError(f"cannot read {name} as an image ({err})") from None


AUDIO_MAGIC = (b"fLaC", b"OggS", b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")  # + RIFF/WAVE, FORM/AIFF
AUDIO_OUTPUTS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".aiff": "AIFF", ".aif": "AIFF"}


def _looks_like_audio(data: bytes) -> bool:
    """Sniff stdin: WAV, AIFF, FLAC, Ogg or MP3 (a RIFF/WEBP image is not audio)."""
    container = (data[:4], data[8:12])
    return data.startswith(AUDIO_MAGIC) or container in ((b"RIFF", b"WAVE"), (b"FORM", b"AIFF"),
                                                          (b"FORM", b"AIFC"))


# The options each kind of input takes, per command (the rest are usage errors for that input).
FLAGS = {
    "encode": {"image": ("quality", "bpp", "refine"), "audio": ("bitrate",),
               "video": ("quality", "gop", "frames", "start", "bitrate", "no_audio", "refine")},
    "decode": {"image": (), "audio": ("start", "duration"), "video": ("start", "frames")},
}


def _check_flags(args: argparse.Namespace, kind: str) -> None:
    """Refuse an option given for a kind of input that does not take it (exit status 2)."""
    table = FLAGS[args.command]
    for name in dict.fromkeys(n for names in table.values() for n in names):
        if getattr(args, name, None) and name not in table[kind]:
            owners = [k for k, names in table.items() if name in names]
            raise UsageError(f"--{name} applies to {' and '.join(owners)} input only")


VIDEO_MAGIC = {b"YUV4MPEG2": ".y4m", b"\x1a\x45\xdf\xa3": ".mkv"}  # + ISO BMFF (ftyp), RIFF/AVI


def _video_suffix(data: bytes) -> str | None:
    """Sniff stdin: the extension of a Y4M, Matroska/WebM, MP4/MOV or AVI stream, else None."""
    for magic, suffix in VIDEO_MAGIC.items():
        if data.startswith(magic):
            return suffix
    if data[4:8] == b"ftyp":
        return ".mp4"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return ".avi"
    return None


def _frame_progress(verb: str, total: int | None):
    """A stderr reporter of frames done and frames per second, for interactive terminals."""
    start, tty = time.monotonic(), sys.stderr.isatty()

    def report(done: int, final: bool = False) -> None:
        if not tty:
            return
        rate = done / max(time.monotonic() - start, 1e-9)
        of = f"/{total}" if total else ""
        print(f"\rncodec: {verb} frame {done}{of}, {rate:.2f} frames/s", end="\n" if final else "",
              file=sys.stderr, flush=True)

    return report


def _print_warnings(caught) -> None:
    for w in caught:
        print(f"ncodec: warning: {w.message}", file=sys.stderr)


def _encode_video(args: argparse.Namespace, path: str) -> None:
    """Stream a video file's frames through the video encoder into args.output."""
    from ncodec.video_audio import DEFAULT_BITRATE, encode_track
    from ncodec.video_codec import DEFAULT_GOP, VideoEncoder
    from ncodec.video_io import VideoReader

    if not Path(path).is_file():
        raise CliError(f"no such file: {args.input}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = VideoReader(path)
    _print_warnings(caught)
    info = reader.info
    start = args.start or 0.0
    frames = reader.frames(start, args.frames)
    total = None
    if info.frames:
        total = max(info.frames - round(start * info.frame_rate), 0)
        total = min(total, args.frames) if args.frames else total
    report = _frame_progress("encoding", total)
    with _atomic_output(args.output) as tmp, open(tmp, "w+b") as out:
        enc = VideoEncoder(out, info.width, info.height, info.frame_rate,
                           4.0 if args.quality is None else args.quality,
                           DEFAULT_GOP if args.gop is None else args.gop, args.model,
                           refine=args.refine)
        for rgb in frames:
            enc.write(rgb)
            report(enc.frames)
        report(enc.frames, final=True)
        if info.has_audio and not args.no_audio:
            enc.add_audio(encode_track(reader, start, enc.frames, info.frame_rate,
                                       DEFAULT_BITRATE if args.bitrate is None else args.bitrate))
        enc.close()


def _bit_depth(subtype: str) -> int:
    depths = {"PCM_S8": 8, "PCM_U8": 8, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 32}
    return depths.get(subtype, 16)


def _encode_audio(args: argparse.Namespace, data: bytes | None) -> None:
    """Stream an audio file (path, or stdin bytes) through the audio encoder into args.output."""
    import soundfile as sf
    from ncodec.audio_codec import AudioEncoder

    if data is None and not Path(args.input).is_file():
        raise CliError(f"no such file: {args.input}")
    try:
        source = sf.SoundFile(io.BytesIO(data) if data is not None else args.input)
    except (RuntimeError, TypeError, ValueError) as err:  # LibsndfileError is a RuntimeError
        raise CliError(f"cannot read {args.input} as audio ({err})") from None
    with source, _atomic_output(args.output) as tmp, open(tmp, "wb") as out:
        enc = AudioEncoder(out, source.samplerate, source.channels, source.frames,
                           6.0 if args.bitrate is None else args.bitrate, args.model,
                           _bit_depth(source.subtype))
        for block in source.blocks(1 << 16, dtype="float32", always_2d=True):
            enc.write(block.T)
        enc.close()


def cmd_encode(args: argparse.Namespace) -> None:
    from ncodec.video_io import VIDEO_SUFFIXES

    data = _read_input("-") if args.input == "-" else None
    if data is not None:
        video = _video_suffix(data)
        kind = "audio" if _looks_like_audio(data) else "video" if video else "image"
    else:
        suffix = Path(args.input).suffix.lower()
        video = suffix if suffix in VIDEO_SUFFIXES else None
        kind = "audio" if suffix in AUDIO_SUFFIXES else "video" if video else "image"
    _check_flags(args, kind)
    if kind == "audio":
        _encode_audio(args, data)
        return
    if kind == "video":
        if data is None:
            _encode_video(args, args.input)
            return
        with tempfile.TemporaryDirectory() as folder:  # PyAV reads the stream from a file
            spool = Path(folder) / f"stdin{video}"
            spool.write_bytes(data)
            _encode_video(args, str(spool))
        return
    from ncodec.image_codec import encode_image

    from .rate_control import encode_to_bpp

    image = _open_image(_read_input(args.input) if data is None else data, args.input)
    if args.bpp is not None:
        data, quality = encode_to_bpp(image, args.bpp, args.model, args.refine)
        print(f"quality {quality:.2f} for target {args.bpp} bpp", file=sys.stderr)
    else:
        quality = 4.0 if args.quality is None else args.quality
        data = encode_image(image, quality, args.model, progress=_progress(), refine=args.refine)
    with _atomic_output(args.output) as tmp:
        Path(tmp).write_bytes(data)


def _decode_audio(args: argparse.Namespace, data: bytes) -> None:
    """Decode (a time range of) an audio file, streaming into a soundfile-written output."""
    import soundfile as sf
    from ncodec.audio_codec import AudioDecoder

    suffix = Path(args.output).suffix.lower() if args.output != "-" else ".wav"
    if suffix not in AUDIO_OUTPUTS:
        raise CliError(f"unknown audio output extension {suffix!r} (use .wav, .flac, .ogg)")
    dec = AudioDecoder(data)
    dec.span(args.start, args.duration)  # refuse a bad range before any output exists
    fmt = AUDIO_OUTPUTS[suffix]
    subtype = "VORBIS" if fmt == "OGG" else "PCM_24" if dec.params.bit_depth > 16 else "PCM_16"
    with _atomic_output(args.output) as tmp, sf.SoundFile(
            tmp, "w", dec.params.sample_rate, dec.params.channels, subtype, format=fmt) as out:
        for block in dec.blocks(args.start, args.duration):
            out.write(block.T)


def _modality(data: bytes) -> int | None:
    """HEAD's modality byte of an ncodec file (None if this is not one: the decoder reports why)."""
    from ncodec.container import MAGIC

    ok = data.startswith(MAGIC) and data[12:16] == b"HEAD" and len(data) > 18
    return data[18] if ok else None


def _decode_video(args: argparse.Namespace, source) -> None:
    """Decode (a range of) a video file frame by frame into a .y4m, .mkv or .mp4 output."""
    from ncodec.video_codec import Video, VideoDecoder
    from ncodec.video_io import WRITE_SUFFIXES

    suffix = Path(args.output).suffix.lower() if args.output != "-" else ".y4m"
    if suffix not in WRITE_SUFFIXES:
        raise CliError(f"unknown video output extension {suffix!r} (use {', '.join(WRITE_SUFFIXES)})")
    with VideoDecoder(source) as dec:
        first = dec.frame_at(args.start) if args.start else 0
        a, b = dec.span(first, args.frames)
        report = _frame_progress("decoding", b - a)
        with warnings.catch_warnings(record=True) as caught, _atomic_output(args.output, ".y4m") as tmp:
            warnings.simplefilter("always")
            Video(dec, a, b - a).save(tmp, progress=report)
            report(b - a, final=True)
        _print_warnings(caught)


def _read_head(path: str) -> bytes:
    """The first bytes of a file (enough for HEAD's modality byte)."""
    try:
        with open(path, "rb") as f:
            return f.read(64)
    except FileNotFoundError:
        raise CliError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise CliError(f"is a directory: {path}") from None


def cmd_decode(args: argparse.Namespace) -> None:
    from ncodec.container import Modality

    data = _read_input(args.input) if args.input == "-" else None
    modality = _modality(data if data is not None else _read_head(args.input))
    kind = {Modality.AUDIO: "audio", Modality.VIDEO: "video"}.get(modality, "image")
    _check_flags(args, kind)
    if kind == "video":
        _decode_video(args, data if data is not None else args.input)  # a path is read as it decodes
        return
    if data is None:
        data = _read_input(args.input)
    if kind == "audio":
        _decode_audio(args, data)
        return
    from ncodec.image_codec import decode_image

    image = decode_image(data, progress=_progress())
    suffix = Path(args.output).suffix.lower() if args.output != "-" else ".png"
    from PIL import Image

    formats = Image.registered_extensions()
    if suffix not in formats:
        raise CliError(f"unknown output extension {suffix!r} (use .png, .bmp, .tiff, ...)")
    if formats[suffix] == "JPEG" and image.mode in ("RGBA", "LA"):
        raise CliError("JPEG cannot hold the alpha channel; use .png")
    with _atomic_output(args.output) as tmp:
        image.save(tmp, format=formats[suffix])


def cmd_info(args: argparse.Namespace) -> None:
    from ncodec.file_info import describe_file

    if args.input == "-":
        d = describe_file(_read_input("-"))
    else:
        _read_head(args.input)  # a clear message for a missing file or a folder
        with open(args.input, "rb") as f:
            d = describe_file(f)
    if args.json:
        print(json.dumps(d, indent=2))
        return
    for k, v in d.items():
        if k == "chunks":
            v = _chunk_summary(v)
        elif isinstance(v, dict):
            v = ", ".join(f"{name} {value}" for name, value in v.items())
        print(f"{k:15} {v}")


def _chunk_summary(chunks: list[dict]) -> str:
    """type:bytes for each chunk; per type (count and bytes) when there are many (video frames)."""
    if len(chunks) <= 8:
        return ", ".join(f"{c['type']}:{c['bytes']}" for c in chunks)
    totals: dict[str, list[int]] = {}
    for c in chunks:
        totals.setdefault(c["type"], []).append(c["bytes"])
    return ", ".join(f"{t}: {len(v)} chunks, {sum(v)} bytes" for t, v in totals.items())


def cmd_models(args: argparse.Namespace) -> None:
    import ncodec

    models = ncodec.models()
    if args.json:
        print(json.dumps(models, indent=2))
        return
    for m in models:
        flag = " (default)" if m["default"] else ""
        print(f"{m['id']:24} {m['modality']:6} sha256:{m['sha256'][:16]} "
              f"{m['size_bytes'] / 1e6:.1f} MB{flag}")


def cmd_doctor(args: argparse.Namespace) -> None:
    import ncodec

    report = {"ncodec": ncodec.__version__, "quantize_backends": ncodec.quantize_backends(),
              "models": [m["id"] for m in ncodec.models()]}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"ncodec {report['ncodec']}")
    print("quantization backends:")
    for name, state in report["quantize_backends"].items():
        print(f"  {name:6} {state}")
    print(f"models: {', '.join(report['models']) or 'none installed'}")


def cmd_train_image(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from ncodec.image_model import ImageModelConfig
    from ncodec.train_image import PARTS, train

    cfg = ImageModelConfig()
    if args.init:  # fine-tuning keeps the --init model's layout (widths, channel context)
        from ncodec.image_weights import image_config, resolve_hyperprior
        from ncodec.zoo import describe

        cfg = image_config(describe(resolve_hyperprior(args.init)))
    cfg = replace(cfg, res_units=args.res_units)
    if args.context_slices is not None:
        cfg = replace(cfg, context_slices=args.context_slices)
    if args.lambdas:
        cfg = replace(cfg, levels=len(args.lambdas), lambdas=tuple(args.lambdas))
    ckpt = train(args.data, args.run, args.minutes, args.steps, args.batch, args.crop, args.lr, args.seed,
                 args.val, args.val_every, args.init, cfg=cfg, precision=args.precision,
                 parts=tuple(args.train or PARTS), quantization=args.quantization)
    _export_image_checkpoint(ckpt, args.export, args.model_id)


def _export_image_checkpoint(ckpt: Path, export: str | None, model_id: str) -> None:
    """Write an image training run's checkpoint as a model file, when asked to."""
    if export:
        from ncodec.image_weights import export as export_model
        from ncodec.train_image import checkpoint_model

        model, training = checkpoint_model(ckpt)
        export_model(model, Path(export), model_id, training)
        print(f"exported {export}", file=sys.stderr)


def cmd_train_image_context(args: argparse.Namespace) -> None:
    from ncodec.train_image_context import train_context

    try:
        ckpt = train_context(args.init, args.data, args.run, args.minutes, args.steps, args.slices,
                             args.hidden, args.pool, args.batch, args.crop, args.lr, args.seed, args.val,
                             args.val_every)
    except (ValueError, FileNotFoundError, LookupError) as err:
        raise CliError(str(err)) from None
    _export_image_checkpoint(ckpt, args.export, args.model_id)


def cmd_train_audio(args: argparse.Namespace) -> None:
    from ncodec.train_audio import load_checkpoint_model, train

    ckpt = train(args.data, args.run, args.minutes, args.steps, args.batch, args.seconds, args.lr,
                 args.seed, args.val, args.val_every, args.init, adversarial_after=args.adversarial_after,
                 precision=args.precision)
    if args.export:
        from ncodec.audio_weights import export

        model, training = load_checkpoint_model(ckpt)
        export(model, Path(args.export), args.model_id, training)
        print(f"exported {args.export}", file=sys.stderr)


def cmd_train_image_rvq(args: argparse.Namespace) -> None:
    from ncodec.train_image_rvq import fit_rvq_image

    try:
        path = fit_rvq_image(args.init, args.data, args.export, args.model_id, args.batches,
                             args.prior_batches, args.batch, args.crop, args.stages, args.codebook_size,
                             args.seed)
    except (ValueError, FileNotFoundError, LookupError) as err:
        raise CliError(str(err)) from None
    print(f"exported {path}", file=sys.stderr)


def cmd_train_video(args: argparse.Namespace) -> None:
    from ncodec.train_video import VideoTrainConfig, load_checkpoint_model, train

    tc = VideoTrainConfig(batch=args.batch, crop=args.crop, frames=args.frames, windows_per_clip=args.windows,
                          lr=args.lr, finetune_lr=args.finetune_lr, prior_channels=args.prior_channels,
                          prior_bases=tuple(args.prior_base or ("hyperprior",)), val_every=args.val_every,
                          precision=args.precision)
    try:
        ckpt = train(args.data, args.run, args.minutes, args.init_image, args.steps, tc, args.seed, args.val,
                     args.init_prior)
    except (ValueError, FileNotFoundError, LookupError) as err:
        raise CliError(str(err)) from None
    if args.export:
        from ncodec.video_weights import export

        model, training, image_tensors = load_checkpoint_model(ckpt)
        export(model, Path(args.export), args.model_id, training, image_tensors, training["image_model"])
        print(f"exported {args.export}", file=sys.stderr)


def _run_bench(sweep: Callable[[], list[Path]]) -> None:
    """Print the result files sweep() writes, each followed by its report's files; a BenchError
    (codecs, settings, dataset, result file) is a one-line error."""
    from ncodec.bench import BenchError
    from ncodec.bench.report import write_report

    try:
        written = [path for result in sweep() for path in (result, *write_report(result))]
    except BenchError as err:
        raise CliError(str(err)) from None
    print("\n".join(map(str, written)))


def _codec_list(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _settings(specs: list[str], flag: str = "--settings") -> dict:
    """{codec: values} of repeated CODEC=V,V,... options."""
    from ncodec.bench.codecs import parse_settings

    return dict(parse_settings(spec, flag) for spec in specs)


def cmd_bench_image(args: argparse.Namespace) -> None:
    from ncodec.bench.image import bench_image

    _run_bench(lambda: [bench_image(args.dataset, _codec_list(args.codecs), args.anchor, args.out,
                                    args.workers, args.limit, args.executor, _settings(args.settings),
                                    args.model, args.ray_address)])


def cmd_bench_audio(args: argparse.Namespace) -> None:
    from ncodec.bench.audio import bench_audio

    _run_bench(lambda: bench_audio(args.dataset, _codec_list(args.codecs), args.anchor, args.out,
                                   args.workers, args.limit, args.max_seconds, args.speech,
                                   _settings(args.bitrates, "--bitrates"), args.model, args.executor,
                                   args.ray_address))


def cmd_bench_video(args: argparse.Namespace) -> None:
    from ncodec.bench.video import bench_video

    _run_bench(lambda: [bench_video(args.dataset, _codec_list(args.codecs), args.anchor, args.out,
                                    args.workers, args.frames, args.threads, _settings(args.settings),
                                    args.limit, args.name, model=args.model, executor=args.executor,
                                    ray_address=args.ray_address, gop=args.gop)])


def cmd_datasets_fetch(args: argparse.Namespace) -> None:
    from ncodec.datasets import DatasetError, fetch

    tty, last = sys.stderr.isatty(), -1

    def report(files_done: int, files: int, done: int, total: int | None) -> None:
        nonlocal last
        megabytes = f"{done / 1e6:.1f} MB" if total is None else f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
        line = f"ncodec: {args.name} {files_done}/{files} files, {megabytes}"
        if tty:
            print(f"\r{line}", end="\n" if files_done == files else "", file=sys.stderr, flush=True)
        elif files_done != last:
            print(line, file=sys.stderr, flush=True)
        last = files_done

    try:
        folder = fetch(args.name, args.dest, report)
    except DatasetError as err:
        if tty and last >= 0:
            print(file=sys.stderr)
        raise CliError(str(err)) from None
    print(folder.resolve())


def cmd_datasets_list(args: argparse.Namespace) -> None:
    from ncodec.datasets import DATASETS, default_dest, source_url, status

    dest = Path(args.dest).expanduser() if args.dest else default_dest()
    rows = [{"name": d.name, "description": d.description, "files": len(d.files), "bytes": d.size,
             "url": source_url(d), "dest": str((dest / d.name).resolve()), "status": status(d.name, dest)}
            for d in DATASETS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:  # a size not known in advance shows as "?"
        megabytes = "?" if r["bytes"] is None else f"{r['bytes'] / 1e6:.1f}"
        print(f"{r['name']:{width}} {r['files']:4} files {megabytes:>8} MB  {r['status']:8} "
              f"{r['url']}  -> {r['dest']}")


def cmd_datasets_synth_audio(args: argparse.Namespace) -> None:
    from ncodec.synth_audio import SynthError, synthesize

    if args.music < 0 or args.speech < 0:
        raise UsageError("--music and --speech must not be negative")
    tty = sys.stderr.isatty()

    def report(kind: str, done: int, total: int) -> None:
        if tty or done == total or done % 50 == 0:
            end = "\n" if done == total or not tty else ""
            print(f"\rncodec: {kind} {done}/{total}", end=end, file=sys.stderr, flush=True)

    try:
        files = synthesize(args.out, args.music, args.speech, args.seed, args.soundfont, report)
    except (SynthError, ModuleNotFoundError) as err:
        raise CliError(str(err)) from None
    print(f"{len(files)} files in {Path(args.out).resolve()}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _add_codec_options(p: argparse.ArgumentParser, codecs: str, names: str, anchor: str) -> None:
    """--codecs (default `codecs`, choices `names`) and --anchor, as every bench takes them."""
    p.add_argument("--codecs", default=codecs, help=f"comma-separated: {names} (default %(default)s)")
    p.add_argument("--anchor", default=anchor, help="codec the BD-rates are against (default %(default)s)")


def _add_run_options(p: argparse.ArgumentParser, items: str) -> None:
    """--workers, --limit (the first N `items`), --executor, --ray-address and --out."""
    p.add_argument("--workers", type=_positive_int, default=1, help="parallel workers (default 1)")
    p.add_argument("--limit", type=_positive_int, help=f"only the first N {items}")
    p.add_argument("--executor", choices=["process", "ray"], default="process",
                   help="worker processes on this machine, or Ray tasks (default %(default)s)")
    p.add_argument("--ray-address", help="Ray cluster to run on (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--out", default="bench-results", help="output folder (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ncodec", description="Neural compression codecs.")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("encode", help="compress an image, audio or video file to .ncz")
    e.add_argument("input", help="image, audio (.wav .flac .ogg .mp3 .opus .aiff) or video (.mp4 .mkv .webm "
                                 ".avi .mov .y4m) file, or - for stdin")
    e.add_argument("-o", "--output", required=True, help=".ncz file, or - for stdout")
    rate = e.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=float, help="images and video: 1 (smallest) .. 8 (best), default 4")
    rate.add_argument("--bpp", type=float, help="images: target bits per pixel (searches quality)")
    e.add_argument("--bitrate", type=float,
                   help="audio, and a video's audio track: kbps, one of 1.5 3 6 12 24 (default 6), a "
                        "ceiling on the file's rate; stereo splits it equally between mid and side")
    e.add_argument("--model", help="model id (see `ncodec models`)")
    e.add_argument("--refine", type=int, metavar="STEPS",
                   help="encoder-side latent refinement steps of images and video frames: better "
                        "rate-distortion from the same decoder, at ~1 s per step per megapixel; default "
                        "20 up to 4 megapixels (video intra frames 40), 0 above; 0: fastest")
    e.add_argument("--gop", type=_positive_int, metavar="N",
                   help="video: an intra frame every N frames (default 32; 1: every frame intra)")
    e.add_argument("--frames", type=_positive_int, metavar="N", help="video: encode at most N frames")
    e.add_argument("--start", type=_non_negative_float, metavar="S",
                   help="video: start S seconds into the input (default 0)")
    e.add_argument("--no-audio", action="store_true",
                   help="video: drop the audio track (by default it is coded with the audio codec)")
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="decompress .ncz; output format from the extension")
    d.add_argument("input", help=".ncz file, or - for stdin")
    d.add_argument("-o", "--output", required=True,
                   help="image, audio (.wav .flac .ogg) or video (.y4m .mkv .mp4) file, or - for PNG / WAV / "
                        "Y4M on stdout")
    d.add_argument("--start", type=float,
                   help="audio and video: first second to decode (default 0); video decoding starts at the "
                        "intra frame at or before it and drops the frames before")
    d.add_argument("--duration", type=float, help="audio: seconds to decode (default: to the end)")
    d.add_argument("--frames", type=_positive_int, metavar="N", help="video: decode at most N frames")
    d.set_defaults(func=cmd_decode)

    i = sub.add_parser("info", help="describe a .ncz file")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("models", help="list installed models")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_models)

    dr = sub.add_parser("doctor", help="report quantization backends (torch/cpp/cuda) and models")
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(func=cmd_doctor)

    t = sub.add_parser("train", help="train a model")
    tsub = t.add_subparsers(dest="modality", required=True)
    ti = tsub.add_parser("image", help="train the variable-rate image model")
    ti.add_argument("--data", nargs="+", required=True, help="folders of training images")
    ti.add_argument("--run", required=True, help="run folder (checkpoint, log); resumes")
    ti.add_argument("--minutes", type=float, default=60.0)
    ti.add_argument("--steps", type=int, default=10**9)
    ti.add_argument("--batch", type=int, default=8)
    ti.add_argument("--crop", type=int, default=128)
    ti.add_argument("--lr", type=float, default=1e-4)
    ti.add_argument("--seed", type=int, default=0)
    ti.add_argument("--val", help="validation image folder")
    ti.add_argument("--val-every", type=int, default=500)
    ti.add_argument("--init", help="start from a shipped model file (fine-tuning)")
    ti.add_argument("--res-units", type=int, default=1,
                    help="residual units per coarse scale of the transforms (new runs; units the "
                         "--init model lacks start as identity)")
    ti.add_argument("--context-slices", type=int,
                    help="code the latent in this many channel slices with a channel context "
                         "(new runs; 0: hyperprior only; default: the --init model's, else 0)")
    ti.add_argument("--lambdas", nargs="+", type=float, metavar="LAMBDA",
                    help="the quality ladder: level i trains rate + LAMBDA_i * 255^2 * MSE, increasing "
                         "(new runs; default: the --init model's, else 0.0018 ... 0.18); with --init, "
                         "its gains move to the new ladder (interpolated in log lambda) and then train")
    ti.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="bf16 autocasts the transforms (2-3x faster on AMX CPUs); auto picks it "
                         "where the hardware computes bf16 natively")
    ti.add_argument("--train", nargs="+",
                    choices=["g_a", "h_a", "g_s", "h_s", "context", "z_density", "gains"],
                    help="train only these networks and keep the rest frozen (new runs; default: all); "
                         "--train g_s fine-tunes the decoder for the latents the encoder already writes")
    ti.add_argument("--quantization", choices=["noise", "round"], default="noise",
                    help="latents in the rate term: uniform noise, or the rounded symbols coding writes "
                         "(straight-through; new runs); --quantization round with the encoder frozen tunes "
                         "the decoder and entropy model for exactly the coded rate (use --crop 256 or more)")
    ti.add_argument("--export", help="write the trained model as a shipped model file")
    ti.add_argument("--model-id", default="image-hyperprior-v7")
    ti.set_defaults(func=cmd_train_image)

    tc = tsub.add_parser(
        "image-context", help="train a channel context for a hyperprior image model",
        description="Keep a hyperprior image model's transforms and hyperprior, and train per-slice context "
                    "networks that predict each channel slice's mean and scale from the slices before it, "
                    "on the latents of a pool of random training crops (rate only). Resumable.")
    tc.add_argument("--init", required=True, help="hyperprior image model file or id")
    tc.add_argument("--data", nargs="+", required=True, help="folders of training images")
    tc.add_argument("--run", required=True, help="run folder (checkpoint, log); resumes")
    tc.add_argument("--minutes", type=float, default=30.0)
    tc.add_argument("--steps", type=int, default=10**9)
    tc.add_argument("--slices", type=int, default=8, help="channel slices (must divide the latent channels)")
    tc.add_argument("--hidden", type=int, default=64, help="width of each slice's context network")
    tc.add_argument("--pool", type=int, default=2400, help="training crops encoded once into the latent pool")
    tc.add_argument("--batch", type=int, default=16)
    tc.add_argument("--crop", type=int, default=256, help="crop side, a multiple of 64")
    tc.add_argument("--lr", type=float, default=1e-3)
    tc.add_argument("--seed", type=int, default=0)
    tc.add_argument("--val", help="validation image folder (logs the rate ratio per quality)")
    tc.add_argument("--val-every", type=int, default=2000)
    tc.add_argument("--export", help="write the model with its context as a model file")
    tc.add_argument("--model-id", default="image-hyperprior-v7")
    tc.set_defaults(func=cmd_train_image_context)

    ta = tsub.add_parser("audio", help="train the RVQ audio model (24 kHz, 1.5-24 kbps)")
    ta.add_argument("--data", nargs="+", required=True, help="folders of audio files (wav/flac/ogg/...)")
    ta.add_argument("--run", required=True, help="run folder (checkpoint, log); resumes")
    ta.add_argument("--minutes", type=float, default=60.0)
    ta.add_argument("--steps", type=int, default=10**9)
    ta.add_argument("--batch", type=int, default=16)
    ta.add_argument("--seconds", type=float, default=1.0, help="length of the training crops")
    ta.add_argument("--lr", type=float, default=3e-4)
    ta.add_argument("--seed", type=int, default=0)
    ta.add_argument("--val", help="validation audio folder")
    ta.add_argument("--val-every", type=int, default=1000)
    ta.add_argument("--init", help="start from an audio model file (fine-tuning)")
    ta.add_argument("--adversarial-after", type=int, metavar="STEP",
                    help="from this step on, train a multi-scale STFT discriminator and add its "
                         "adversarial and feature-matching losses (default: never)")
    ta.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="bf16 autocasts the convolutions (the RVQ stays fp32); auto picks it where "
                         "the hardware computes bf16 natively")
    ta.add_argument("--export", help="write the trained model as a model file")
    ta.add_argument("--model-id", default="audio-seanet-v1")
    ta.set_defaults(func=cmd_train_audio)

    tr = tsub.add_parser(
        "image-rvq", help="fit the RVQ-latent image model on a hyperprior model's latents",
        description="Take a hyperprior image model's transforms, train residual-VQ codebooks of its latent "
                    "vectors (EMA k-means) on random training crops and per-stage categorical priors, and "
                    "write the model file (quality 1..8 codes 2..S stages).")
    tr.add_argument("--init", required=True, help="hyperprior image model file or id")
    tr.add_argument("--data", nargs="+", required=True, help="folders of training images")
    tr.add_argument("--export", required=True, help="model file to write")
    tr.add_argument("--model-id", default="image-rvq-v1")
    tr.add_argument("--batches", type=int, default=200, help="batches of crops for the codebooks")
    tr.add_argument("--prior-batches", type=int, default=50, help="further batches for the priors")
    tr.add_argument("--batch", type=int, default=16)
    tr.add_argument("--crop", type=int, default=256, help="crop side, a multiple of 16")
    tr.add_argument("--stages", type=int, default=32)
    tr.add_argument("--codebook-size", type=int, default=256)
    tr.add_argument("--seed", type=int, default=0)
    tr.set_defaults(func=cmd_train_image_rvq)

    tv = tsub.add_parser(
        "video", help="train the video model's temporal prior from an image model",
        description="Decode short windows of consecutive frames from video files (PyAV) into a cache in the "
                    "run folder, then train the temporal prior (by default the image transforms stay frozen: "
                    "intra frames code exactly as the image codec). Resumes from the run folder.")
    tv.add_argument("--data", nargs="+", required=True, help="video files or folders of them")
    tv.add_argument("--run", required=True, help="run folder (frame cache, checkpoint, log); resumes")
    tv.add_argument("--init-image", help="image model file or id to start from (needed for a new run); "
                    "a video model gives its image part")
    tv.add_argument("--init-prior", action="append",
                    help="video model file or id whose temporal priors a new run's start from (same width; "
                         "repeat to take priors on different bases from different models)")
    tv.add_argument("--minutes", type=float, default=60.0)
    tv.add_argument("--steps", type=int, default=10**9)
    tv.add_argument("--batch", type=int, default=8)
    tv.add_argument("--crop", type=int, default=256, help="square crop side, a multiple of 64")
    tv.add_argument("--frames", type=int, default=4,
                    help="frames per training window (1 intra + the rest inter)")
    tv.add_argument("--windows", type=int, default=200, help="windows cached per clip")
    tv.add_argument("--lr", type=float, default=1e-4, help="learning rate of the temporal prior")
    tv.add_argument("--finetune-lr", type=float, default=0.0,
                    help="also train the image transforms at this rate (default 0: frozen)")
    tv.add_argument("--prior-channels", type=int, default=64, help="width of the temporal prior")
    tv.add_argument("--prior-base", choices=("hyperprior", "previous"), action="append",
                    help="what the prior's mean corrections add to: the hyperprior's mean (default), or the "
                         "previous frame's latent (new runs; measured worse on fades, see the video model "
                         "card). Repeat for one prior per base: each inter frame is coded with the one that "
                         "costs fewer bits")
    tv.add_argument("--seed", type=int, default=0)
    tv.add_argument("--val", help="held-out validation clip (default: the last data file, if several)")
    tv.add_argument("--val-every", type=int, default=500)
    tv.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="bf16 autocasts the image transforms (the priors, context and rates stay fp32); "
                         "auto picks it where the hardware computes bf16 natively (a resumed run may switch)")
    tv.add_argument("--export", help="write the trained model as a video model file")
    tv.add_argument("--model-id", default="video-stprior-v9")
    tv.set_defaults(func=cmd_train_video)

    b = sub.add_parser("bench", help="benchmark ncodec against other codecs")
    bsub = b.add_subparsers(dest="modality", required=True)
    bi = bsub.add_parser(
        "image", help="rate-distortion sweep over an image folder",
        description="Sweep codecs over their quality settings on every image of a folder; write "
                    "DIR/image_<dataset>.json (per-image rows, means, BD-rates), .md and RD plots. "
                    "Rerunning into the same --out computes only the rows it lacks.")
    bi.add_argument("--dataset", required=True, help="folder of images (searched recursively)")
    _add_codec_options(bi, "ncodec,jpeg,webp,avif,jxl",
                       "ncodec, ncodec:MODEL (another installed image model), jpeg, webp, avif, jxl, "
                       "compressai:ARCH[@CHECKPOINTS]", "webp")
    bi.add_argument("--settings", action="append", default=[], metavar="CODEC=V,V,...",
                    help="settings to sweep for one codec instead of its defaults, e.g. jpeg=20,50,80 "
                         "(repeatable)")
    _add_run_options(bi, "images")
    bi.add_argument("--model", help="ncodec model id (default: the default image model)")
    bi.set_defaults(func=cmd_bench_image)

    ba = bsub.add_parser(
        "audio", help="rate-distortion sweep over audio folders",
        description="Sweep audio codecs over their bitrates on every file of each dataset folder; write "
                    "DIR/audio_<dataset>.json (per-file rows, means per bitrate, BD-rates on kbps), .md and "
                    "RD plots per dataset. kbps counts the whole encoded file (container included); "
                    "metrics: mel distance (the training loss mel_loss at 24 kHz), SI-SDR, and for speech "
                    "PESQ and STOI (pip install 'ncodec[audio-metrics]'); RTF = seconds of audio per "
                    "second of compute. A codec that cannot run here (ncodec without an audio model, "
                    "PyAV without libopus/libmp3lame) is skipped with a one-line note. Rerunning into "
                    "the same --out computes only the rows it lacks.")
    ba.add_argument("--dataset", action="append", required=True, metavar="DIR",
                    help="folder of audio files (.wav .flac .ogg .mp3, searched recursively; other files "
                         "are ignored); repeat for several datasets, one result file each")
    _add_codec_options(ba, "ncodec,opus,mp3", "ncodec, opus, mp3", "opus")
    ba.add_argument("--bitrates", action="append", default=[], metavar="CODEC=KBPS,...",
                    help="bitrates to sweep for one codec instead of its defaults (repeatable). "
                         "Defaults: ncodec=1.5,3,6,12,24 (kbps, the model's rates), "
                         "opus=6,8,12,16,24,32,48 and mp3=16,24,32,48,64,96,128 (kbps for all channels)")
    ba.add_argument("--speech", action=argparse.BooleanOptionalAction, default=None,
                    help="--speech: every dataset is speech (PESQ and STOI are measured); --no-speech: none "
                         "is. Default: a dataset is speech when its folder name contains 'speech' "
                         "(any case)")
    ba.add_argument("--max-seconds", type=_positive_float, metavar="S",
                    help="only the first S seconds of each file (default: whole files)")
    _add_run_options(ba, "files of each dataset")
    ba.add_argument("--model", help="ncodec audio model id (default: the default audio model, else the "
                                    "installed audio model `ncodec encode` would use)")
    ba.set_defaults(func=cmd_bench_audio)

    bv = bsub.add_parser(
        "video", help="rate-distortion sweep over video clips",
        description="Encode every clip with each codec over its CRF range (ncodec: its qualities, GOP 32), "
                    "in memory, frame by frame (x264 and x265 preset medium, SVT-AV1 preset 8, through "
                    "PyAV; a codec this PyAV lacks, and ncodec without a video model, is skipped with a "
                    "one-line note); "
                    "write DIR/video_<dataset>.json (per-clip rows: bpp, PSNR-RGB, PSNR-YUV, encode/"
                    "decode fps; means; BD-rates), .md and RD plots. Rerunning into the same --out "
                    "computes only the rows it lacks.")
    bv.add_argument("--dataset", nargs="+", action="extend", required=True, metavar="DIR_OR_FILE",
                    help="video files and/or folders of them (.mp4 .mkv .webm .avi .mov .y4m, searched "
                         "recursively)")
    _add_codec_options(bv, "x264,x265,svtav1,ncodec", "x264, x265, svtav1, ncodec", "x264")
    bv.add_argument("--settings", action="append", default=[], metavar="CODEC=CRF,...",
                    help="CRFs (ncodec: qualities) to sweep for one codec instead of its defaults, e.g. "
                         "x264=20,26,32,38 (repeatable). Defaults: x264 and x265 18,22,26,30,34,38; svtav1 "
                         "20,27,34,41,48,55; ncodec 1,2,...,8")
    bv.add_argument("--frames", type=_positive_int, metavar="N",
                    help="only the first N frames of each clip (default: whole clips)")
    bv.add_argument("--threads", type=_positive_int, default=1,
                    help="threads of each encoder and decoder (default 1: speeds comparable per core)")
    bv.add_argument("--gop", type=_positive_int, metavar="N",
                    help="one intra period for every codec: ncodec's GOP and the anchors' keyframe "
                         "interval (default: each codec's own: ncodec 32, the anchors their encoders' "
                         "defaults, x264's 250)")
    bv.add_argument("--name", help="dataset name in the result file name (default: the clips' folder, "
                                   "or the one file's name)")
    _add_run_options(bv, "clips")
    bv.add_argument("--model", help="ncodec video model id (default: the default video model, else the "
                                    "installed video model `ncodec encode` would use)")
    bv.set_defaults(func=cmd_bench_video)

    ds = sub.add_parser("datasets", help="download standard evaluation datasets (checksum-verified)")
    dsub = ds.add_subparsers(dest="action", required=True)
    dest_help = "parent folder (default: $NCODEC_DATA, else ~/.cache/ncodec/datasets)"
    df = dsub.add_parser(
        "fetch", help="download a dataset into DEST/NAME and print that folder",
        description="Download every file of a dataset, verify its size (where registered) and its "
                    "registered digests (sha256; CLIC: sha1 and md5), unpack archives, and print the "
                    "folder. Verified files are skipped, so rerunning resumes. "
                    "$NCODEC_DATASETS_MIRROR replaces the source URL (files come from MIRROR/FILE).")
    df.add_argument("name", help="dataset name (see `ncodec datasets list`)")
    df.add_argument("--dest", help=dest_help)
    df.set_defaults(func=cmd_datasets_fetch)
    dl = dsub.add_parser("list", help="registered datasets and whether they are fetched",
                         description="One line per dataset (size '?' where not known in advance); "
                                     "--json gives bytes null then.")
    dl.add_argument("--dest", help=dest_help)
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=cmd_datasets_list)
    dsa = dsub.add_parser(
        "synth-audio", help="synthesise training audio: FluidSynth music and eSpeak NG speech",
        description="Render random General MIDI pieces (~24 s each) with FluidSynth and a GM soundfont and "
                    "speak English sentences (~15 s each) with eSpeak NG, as FLAC files in OUT/music and "
                    "OUT/speech for `ncodec train audio --data`. Needs the Debian packages fluidsynth, "
                    "fluid-soundfont-gm and espeak-ng, and mido (pip install ncodec[synth]). Existing "
                    "files are kept: reruns resume and extend the set reproducibly.")
    dsa.add_argument("--out", required=True, help="output folder")
    dsa.add_argument("--music", type=int, default=100, help="pieces of music (default 100)")
    dsa.add_argument("--speech", type=int, default=200, help="speech utterances (default 200)")
    dsa.add_argument("--seed", type=int, default=0)
    dsa.add_argument("--soundfont", help="General MIDI .sf2 (default: the Debian FluidR3_GM)")
    dsa.set_defaults(func=cmd_datasets_synth_audio)
    return p


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (e.g. a skipped file in a model folder) as one `ncodec: warning:` line."""
    print(f"ncodec: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ncodec.audio_codec import AudioError
    from ncodec.container import ContainerError
    from ncodec.entropy.coder import DecodeError
    from ncodec.image_codec import ImageError
    from ncodec.video_io import VideoError
    from ncodec.zoo import ModelNotFound, NotAModelFile

    expected = (CliError, ContainerError, ImageError, AudioError, VideoError, DecodeError, ModelNotFound,
                NotAModelFile, OSError)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            args.func(args)
    except UsageError as err:
        print(f"ncodec: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `ncodec info f.ncz | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BAD_INPUT
    except expected as err:
        print(f"ncodec: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("ncodec: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # last resort: one line, never a traceback
        print(f"ncodec: internal error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
