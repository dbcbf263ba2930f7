"""Synthesised training audio: the MIDI composer, the rendering plumbing (with stand-in renderers
that record their arguments), resuming, and the real FluidSynth / eSpeak NG where installed."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

STAND_IN = """#!{python}
import json, math, struct, sys, wave
args = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps([{name!r}, args]) + "\\n")
out = args[args.index("-F" if "-F" in args else "-w") + 1]
rate = int(args[args.index("-r") + 1]) if "-r" in args else 22050
with wave.open(out, "wb") as w:
    w.setnchannels(2 if "-F" in args else 1)
    w.setsampwidth(2)
    w.setframerate(rate)
    n = rate // 2
    frames = [int(8000 * math.sin(i / 9)) for i in range(n) for _ in range(w.getnchannels())]
    w.writeframes(struct.pack("<%dh" % len(frames), *frames))
"""


@pytest.fixture
def stand_ins(tmp_path, monkeypatch) -> Path:
    """Stand-in fluidsynth and espeak-ng first on PATH (they write half a second of a tone and log
    their arguments), and a soundfont file; returns the log."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    for name in ("fluidsynth", "espeak-ng"):
        script = bin_dir / name
        script.write_text(STAND_IN.format(python=sys.executable, log=str(log), name=name))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "gm.sf2").write_bytes(b"RIFF")
    return log


def calls(log: Path) -> list:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_compose_is_deterministic_and_plays_every_part():
    import mido
    from ncodec.synth_audio import BASS_PROGRAMS, CHORD_PROGRAMS, MELODY_PROGRAMS, compose

    def midi_bytes(seed: int) -> bytes:
        buf = io.BytesIO()
        compose(np.random.default_rng(seed)).save(file=buf)
        return buf.getvalue()

    assert midi_bytes(7) == midi_bytes(7) and midi_bytes(7) != midi_bytes(8)
    drums = 0
    for seed in range(12):
        song = compose(np.random.default_rng(seed))
        assert 18 < song.length < 40
        programs, open_notes, notes = {}, set(), {}
        for msg in mido.merge_tracks(song.tracks):
            if msg.type == "program_change":
                programs[msg.channel] = msg.program
            elif msg.type == "note_on":
                open_notes.add((msg.channel, msg.note))
                notes[msg.channel] = notes.get(msg.channel, 0) + 1
                assert 0 < msg.velocity <= 127 and 0 <= msg.note <= 127
            elif msg.type == "note_off":
                open_notes.discard((msg.channel, msg.note))
        assert not open_notes  # every note ends
        assert programs[0] in CHORD_PROGRAMS and programs[1] in BASS_PROGRAMS
        assert programs[2] in MELODY_PROGRAMS
        assert all(notes.get(c, 0) > 8 for c in (0, 1, 2))
        drums += 9 in notes
    assert 0 < drums < 12  # most pieces have drums, not all


def test_synthesize_renders_normalised_flac_and_resumes(stand_ins, tmp_path):
    from ncodec.synth_audio import PEAK, synthesize

    out = tmp_path / "synth"
    files = synthesize(out, music=2, speech=3, seed=1, soundfont=str(tmp_path / "gm.sf2"))
    assert [f.relative_to(out).as_posix() for f in files] == [
        "music/music_00000.flac", "music/music_00001.flac",
        "speech/speech_00000.flac", "speech/speech_00001.flac", "speech/speech_00002.flac"]
    for f in files:
        audio, rate = sf.read(f, always_2d=True)
        assert abs(np.abs(audio).max() - PEAK) < 1e-3
        assert (rate, audio.shape[1]) == ((24000, 2) if "music" in f.name else (22050, 1))
    made = calls(stand_ins)
    music = [args for name, args in made if name == "fluidsynth"]
    speech = [args for name, args in made if name == "espeak-ng"]
    assert len(music) == 2 and len(speech) == 3
    assert all(a[a.index("-r") + 1] == "24000" and a[-2] == str(tmp_path / "gm.sf2") for a in music)
    texts = [a[-1] for a in speech]
    assert len(set(texts)) == 3 and all(t.count(".") >= 4 for t in texts)  # four sentences each
    assert not list(out.rglob(".*"))  # no temporary files left
    # a rerun keeps what exists and renders only the new items, identically seeded
    (out / "speech" / "speech_00001.flac").unlink()
    synthesize(out, music=3, speech=3, seed=1, soundfont=str(tmp_path / "gm.sf2"))
    again = calls(stand_ins)[len(made):]
    assert [name for name, _ in again] == ["fluidsynth", "espeak-ng"]
    assert again[1][1][:6] + again[1][1][8:] == speech[1][:6] + speech[1][8:]  # all but the temp file


def test_missing_renderers_and_soundfonts_are_clear_errors(tmp_path, monkeypatch):
    from ncodec.synth_audio import SynthError, find_soundfont, synthesize

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    (tmp_path / "gm.sf2").write_bytes(b"RIFF")
    with pytest.raises(SynthError, match="^fluidsynth not found: install the Debian package fluidsynth$"):
        synthesize(tmp_path / "o", music=1, speech=0, soundfont=str(tmp_path / "gm.sf2"))
    with pytest.raises(SynthError, match="^espeak-ng not found: install the Debian package espeak-ng$"):
        synthesize(tmp_path / "o", music=0, speech=1)
    with pytest.raises(SynthError, match="no General MIDI soundfont at /nowhere.sf2"):
        find_soundfont("/nowhere.sf2")


def test_cli_synthesises_a_set(stand_ins, tmp_path, capsys):
    from ncodec.cli.main import main

    out = tmp_path / "set"
    assert main(["datasets", "synth-audio", "--out", str(out), "--music", "1", "--speech", "2",
                 "--soundfont", str(tmp_path / "gm.sf2")]) == 0
    assert capsys.readouterr().out == f"3 files in {out.resolve()}\n"
    assert main(["datasets", "synth-audio", "--out", str(out), "--music", "-1"]) == 2


def test_real_renderers_make_music_and_speech_or_say_what_is_missing(tmp_path):
    """With the Debian packages installed (as on the development machine) the real programs
    render; without them the error names the package to install."""
    from ncodec.synth_audio import SOUNDFONTS, SynthError, synthesize

    have = shutil.which("fluidsynth") and shutil.which("espeak-ng") and any(map(os.path.isfile, SOUNDFONTS))
    if not have:
        with pytest.raises(SynthError, match="install"):
            synthesize(tmp_path, music=1, speech=1)
        return
    music, speech = synthesize(tmp_path, music=1, speech=1)
    audio, rate = sf.read(music, always_2d=True)
    assert rate == 24000 and 18 < len(audio) / rate < 40
    spectrum = np.abs(np.fft.rfft(audio.mean(1)))
    assert spectrum[: len(spectrum) // 6].sum() > spectrum[len(spectrum) // 2 :].sum()  # music, not noise
    audio, rate = sf.read(speech, always_2d=True)
    assert rate == 22050 and 3 < len(audio) / rate < 60
    frames = audio[: len(audio) // 441 * 441, 0].reshape(-1, 441)
    loud = np.sqrt((frames**2).mean(1))
    assert (loud < 0.01).mean() > 0.03 and (loud > 0.05).mean() > 0.3  # pauses between words
