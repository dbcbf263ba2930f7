"""The C++ RVQ kernel under AddressSanitizer and UBSan: no out-of-bounds access, right codes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import ncodec
import pytest

SOURCE = Path(ncodec.__file__).parent / "csrc" / "rvq_cpu.cpp"
DRIVER = Path(__file__).parent / "native" / "rvq_sanitize.cpp"


@pytest.mark.skipif(shutil.which("c++") is None, reason="needs a C++ compiler")
def test_cpp_kernel_is_clean_under_address_and_undefined_sanitizers(tmp_path):
    exe = tmp_path / "rvq_sanitize"
    cmd = ["c++", "-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
           "-DNCODEC_RVQ_STANDALONE", "-pthread", str(SOURCE), str(DRIVER), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300,
                         env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0"})
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert run.stdout.strip() == "ok 48"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs the CUDA compiler")
def test_cuda_kernels_compile(tmp_path):
    """Without a GPU the CUDA kernel cannot run here, but it must at least compile."""
    src = SOURCE.with_name("rvq_cuda.cu")
    build = subprocess.run(["nvcc", "-O3", "-c", "-DNCODEC_RVQ_STANDALONE", str(src), "-o",
                            str(tmp_path / "rvq_cuda.o")], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
