"""Every golden vector decodes to exactly the recorded output, on any machine."""

import sys
from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parents[1] / "bitstream_spec"
sys.path.insert(0, str(SPEC))
from make_vectors import decoded_digest  # noqa: E402
from ncodec.image_codec import decode_image  # noqa: E402

VECTORS = sorted((SPEC / "vectors").glob("*.ncz"))


def test_vectors_exist():
    assert len(VECTORS) >= 5


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector_decodes_bit_exactly(path):
    expected = path.with_suffix(".sha256").read_text().strip()
    assert decoded_digest(decode_image(path.read_bytes())) == expected
