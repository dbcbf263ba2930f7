"""Every golden vector decodes to exactly the recorded output, on any machine."""

import sys
from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parents[1] / "bitstream_spec"
sys.path.insert(0, str(SPEC))
from make_vectors import audio_digest, decoded_digest, video_digest  # noqa: E402
from ncodec.audio_codec import decode_audio  # noqa: E402
from ncodec.container import MAGIC, Modality  # noqa: E402
from ncodec.image_codec import decode_image  # noqa: E402
from ncodec.video_codec import decode_video  # noqa: E402

VECTORS = sorted((SPEC / "vectors").glob("*.ncz"))


def modality(data: bytes) -> Modality:
    """HEAD's modality byte: magic, the HEAD chunk's length and type, then major, minor, modality."""
    return Modality(data[len(MAGIC) + 8 + 2])


def test_vectors_exist():
    assert len(VECTORS) >= 5


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector_decodes_bit_exactly(path):
    expected = path.with_suffix(".sha256").read_text().strip()
    data = path.read_bytes()
    if modality(data) == Modality.AUDIO:
        assert audio_digest(*decode_audio(data)) == expected
    elif modality(data) == Modality.VIDEO:
        assert video_digest(decode_video(data).to_array()) == expected
    else:
        assert decoded_digest(decode_image(data)) == expected
