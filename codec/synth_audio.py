"""Training audio the project synthesises itself: music and speech beside the small real set.

Music: random General MIDI pieces (a chord progression in a random key and tempo, played by a
chord instrument, a bass and a melody instrument, drums in most pieces), written with mido and
rendered by FluidSynth with a GM soundfont (Debian: fluidsynth, fluid-soundfont-gm). Speech:
English sentences from the docstrings of Python's standard library (read, not imported), spoken
by eSpeak NG (Debian: espeak-ng) with random voices, variants, speeds and pitches.

Every item is a FLAC file named by kind and index; its content depends only on (seed, kind,
index), so a rerun skips what exists and extends a folder reproducibly. The renderers are the
Debian programs, run as subprocesses; a missing one is a SynthError naming its package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/soundfonts/default.sf2")
MUSIC_RATE = 24000
TICKS = 480  # per beat
PEAK = 0.9  # rendered pieces are normalised to this peak
# (program range, weight): GM families for each part
CHORD_PROGRAMS = list(range(0, 8)) + list(range(16, 24)) + list(range(24, 32)) + list(range(48, 52)) + \
    list(range(88, 96))
BASS_PROGRAMS = list(range(32, 40))
MELODY_PROGRAMS = list(range(0, 8)) + list(range(24, 32)) + list(range(40, 47)) + list(range(56, 80)) + \
    list(range(80, 88))
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
PROGRESSIONS = ((0, 4, 5, 3), (1, 4, 0, 5), (0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 2, 3, 4))
VOICES = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+f1", "+f2", "+f3", "+f4", "+f5",
            "+klatt", "+klatt2", "+klatt3", "+croak")


class SynthError(RuntimeError):
    """A renderer is missing or failed (one-line message)."""


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SynthError(f"{name} not found: install the Debian package {package}")
    return path


def find_soundfont(path: str | None = None) -> Path:
    """The GM soundfont to render with: `path`, else the first of SOUNDFONTS that exists."""
    for candidate in [path] if path else SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise SynthError(f"no General MIDI soundfont at {path or ', '.join(SOUNDFONTS)}: install "
                     "fluid-soundfont-gm or give --soundfont")


def compose(rng: np.random.Generator, seconds: float = 24.0):
    """A random piece as a mido.MidiFile (type 1: a tempo track and one track per part)."""
    import mido

    bpm = int(rng.integers(70, 161))
    scale = np.array(SCALES[rng.choice(list(SCALES))])
    root = int(rng.integers(45, 57))
    progression = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    bars = max(int(seconds * bpm / 60 / 4), 4)
    bar = 4 * TICKS

    def degree(d: int, octave: int = 0) -> int:
        return root + 12 * (octave + d // 7) + int(scale[d % 7])

    parts: list[tuple[int, int, list[tuple[int, int, int, int]]]] = []  # (channel, program, notes)
    chords, bass, melody, drums = [], [], [], []
    arpeggio, with_drums = rng.random() < 0.4, rng.random() < 0.65
    position = int(rng.integers(0, 7))
    for b in range(bars):
        d = progression[b % len(progression)]
        t0 = b * bar
        triad = [degree(d + k, 1) for k in (0, 2, 4)]
        if arpeggio:
            step = bar // 8
            chords += [(t0 + i * step, step, triad[i % 3], int(rng.integers(50, 80))) for i in range(8)]
        else:
            chords += [(t0, bar, n, int(rng.integers(45, 75))) for n in triad]
        beats = (0, 2) if rng.random() < 0.5 else (0, 1, 2, 3)
        bass += [(t0 + k * TICKS, TICKS * (4 // len(beats)), degree(d, -1), int(rng.integers(70, 100)))
                 for k in beats]
        t = t0
        while t < t0 + bar:  # melody: a random walk on the scale, on chord tones at the bar's start
            length = int(rng.choice([TICKS // 2, TICKS, TICKS, 2 * TICKS]))
            position = d + 2 * int(rng.integers(0, 3)) if t == t0 else position + int(rng.integers(-2, 3))
            position = int(np.clip(position, -3, 12))
            if rng.random() > 0.15:  # else a rest
                melody.append((t, min(length, t0 + bar - t), degree(position, 2), int(rng.integers(60, 110))))
            t += length
        if with_drums:
            drums += [(t0 + k * TICKS, TICKS // 4, 36, 100) for k in (0, 2)]
            drums += [(t0 + k * TICKS, TICKS // 4, 38, 90) for k in (1, 3)]
            drums += [(t0 + k * TICKS // 2, TICKS // 4, 42, int(rng.integers(50, 80))) for k in range(8)]
    parts.append((0, int(rng.choice(CHORD_PROGRAMS)), chords))
    parts.append((1, int(rng.choice(BASS_PROGRAMS)), bass))
    parts.append((2, int(rng.choice(MELODY_PROGRAMS)), melody))
    if drums:
        parts.append((9, 0, drums))
    song = mido.MidiFile(type=1, ticks_per_beat=TICKS)
    song.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))]))
    end = bars * bar + 2 * TICKS  # two beats for the last notes to ring out
    for channel, program, notes in parts:
        events = [(0, 0, mido.Message("program_change", channel=channel, program=program))]
        for start, length, note, velocity in notes:
            events.append((start, 1, mido.Message("note_on", channel=channel, note=note, velocity=velocity)))
            events.append((start + length, 0, mido.Message("note_off", channel=channel, note=note)))
        events.sort(key=lambda e: (e[0], e[1]))
        track, now = mido.MidiTrack(), 0
        for when, _, message in events:
            track.append(message.copy(time=when - now))
            now = when
        track.append(mido.MetaMessage("end_of_track", time=end - now))
        song.tracks.append(track)
    return song


def render_music(song, out: Path, soundfont: Path, rate: int = MUSIC_RATE) -> None:
    """Render a mido.MidiFile with FluidSynth to a FLAC file `out` (stereo, peak-normalised)."""
    import soundfile as sf

    fluidsynth = _tool("fluidsynth", "fluidsynth")
    with tempfile.TemporaryDirectory() as tmp:
        midi, wav = Path(tmp) / "piece.mid", Path(tmp) / "piece.wav"
        song.save(str(midi))
        cmd = [fluidsynth, "-ni", "-q", "-g", "0.5", "-r", str(rate), "-O", "float", "-T", "wav",
               "-F", str(wav), str(soundfont), str(midi)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not wav.is_file():
            raise SynthError(f"fluidsynth failed: {(done.stderr or done.stdout).strip()[-200:]}")
        audio, got = sf.read(str(wav), dtype="float32", always_2d=True)
    _write(out, audio, got)


def _write(out: Path, audio: np.ndarray, rate: int) -> None:
    import soundfile as sf

    peak = float(np.abs(audio).max())
    if peak == 0:
        raise SynthError(f"{out.name}: the renderer produced silence")
    tmp = out.with_name(f".{out.name}.tmp.flac")
    sf.write(str(tmp), audio * (PEAK / peak), rate, subtype="PCM_16", format="FLAC")
    tmp.replace(out)


def sentences(min_words: int = 6, max_words: int = 30) -> list[str]:
    """Plain English sentences from the docstrings of the standard library's top-level modules,
    read with `ast` (nothing is imported), sorted: the same list on every run of one Python."""
    import ast
    import sysconfig

    found: set[str] = set()
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))]
        for text in filter(None, (ast.get_docstring(n) for n in nodes)):
            for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
                if re.fullmatch(r"[A-Z][A-Za-z ,;'-]+[.!?]", s) and min_words <= len(s.split()) <= max_words:
                    found.add(s)
    return sorted(found)


def speak(text: str, out: Path, voice: str, speed: int, pitch: int) -> None:
    """Speak `text` with eSpeak NG into a FLAC file `out` (its native 22.05 kHz, mono)."""
    import soundfile as sf

    espeak = _tool("espeak-ng", "espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        cmd = [espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(wav), text]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not wav.is_file():
            raise SynthError(f"espeak-ng failed: {(done.stderr or done.stdout).strip()[-200:]}")
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    _write(out, audio, rate)


def synthesize(out_dir: str | Path, music: int, speech: int, seed: int = 0, soundfont: str | None = None,
               progress: Callable[[str, int, int], None] | None = None) -> list[Path]:
    """`music` pieces (~24 s) and `speech` utterances (several sentences, ~15 s) into out_dir/music
    and out_dir/speech; existing files are kept. Returns every file of the set."""
    out = Path(out_dir)
    files: list[Path] = []
    if music:
        font = find_soundfont(soundfont)
        (out / "music").mkdir(parents=True, exist_ok=True)
        for i in range(music):
            path = out / "music" / f"music_{i:05d}.flac"
            if not path.exists():
                render_music(compose(np.random.default_rng([seed, 0, i])), path, font)
            files.append(path)
            if progress:
                progress("music", i + 1, music)
    if speech:
        text: list[str] = []  # read when the first missing utterance needs it
        (out / "speech").mkdir(parents=True, exist_ok=True)
        for i in range(speech):
            path = out / "speech" / f"speech_{i:05d}.flac"
            if not path.exists():
                text = text or sentences()
                rng = np.random.default_rng([seed, 1, i])
                words = " ".join(text[k] for k in rng.choice(len(text), 4, replace=False))
                voice = str(rng.choice(VOICES)) + str(rng.choice(VARIANTS))
                speak(words, path, voice, int(rng.integers(120, 200)), int(rng.integers(20, 80)))
            files.append(path)
            if progress:
                progress("speech", i + 1, speech)
    return files
