"""The CPU facts training adapts to: usable cores and native bfloat16 products."""

from __future__ import annotations

import pytest

from tfrs_movies.hardware import available_cores, native_bfloat16

SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
COOPER_LAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16\n"  # no x86 flags line


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [(SAPPHIRE_RAPIDS, True), (COOPER_LAKE, True), (SKYLAKE, False), (ARM, False), ("", False)],
    ids=["amx", "avx512_bf16", "no_bf16", "arm", "empty"],
)
def test_native_bfloat16_reads_the_cpu_s_flags(monkeypatch, cpuinfo, native):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    assert native_bfloat16(cpuinfo) is native


def test_native_bfloat16_is_off_without_onednn_kernels(monkeypatch):
    # TensorFlow's Eigen kernels emulate bfloat16 whatever the CPU.
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert native_bfloat16(SAPPHIRE_RAPIDS) is False
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    assert native_bfloat16(SAPPHIRE_RAPIDS) is True


def test_native_bfloat16_without_a_cpuinfo_file_is_false(monkeypatch, tmp_path):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    monkeypatch.setattr("tfrs_movies.hardware.CPUINFO", tmp_path / "absent")
    assert native_bfloat16() is False


def test_available_cores_is_the_affinity_when_the_os_reports_one(monkeypatch):
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {2, 5, 7}, raising=False)
    assert available_cores() == 3  # the affinity, not the machine's count
    monkeypatch.delattr(os, "sched_getaffinity")  # as on macOS and Windows
    assert available_cores() == 8
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # the count unknown
    assert available_cores() == 1
