"""precision = "auto" (bf16 where the device multiplies bf16 natively) and where local workers train."""

from __future__ import annotations

import pytest
import torch

from genopt.device import native_bf16, resolve_precision
from genopt.errors import GenoptError
from genopt.spec import StudySpec, spec_from_dict
from genopt.study.workers import cuda_visible_devices, worker_gpus

# /proc/cpuinfo flags of the CPUs genopt was measured on (docs/benchmarks.md), trimmed.
EPYC = ["fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"]
XEON_AMX = ["fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
NO_BF16 = ["fpu", "sse2", "avx2", "fma"]


@pytest.mark.parametrize(
    ("flags", "expected"), [(EPYC, "bf16"), (XEON_AMX, "bf16"), (["amx_bf16"], "bf16"), (NO_BF16, "fp32")]
)
def test_auto_is_bf16_on_a_cpu_with_native_bf16_flags(flags, expected):
    assert resolve_precision("auto", "cpu", flags=flags) == expected
    assert native_bf16("cpu", flags=flags) == (expected == "bf16")


@pytest.mark.parametrize(("capability", "native"), [((8, 0), True), ((9, 0), True), ((7, 5), False)])
def test_auto_is_bf16_on_a_gpu_from_compute_capability_8(capability, native):
    # with the step replayed from a CUDA graph, bf16 trained faster than fp32 on an H100
    assert native_bf16("cuda:0", capability=capability) == native
    assert resolve_precision("auto", "cuda:0", capability=capability) == ("bf16" if native else "fp32")


def test_explicit_precisions_are_kept_whatever_the_device():
    for flags in (EPYC, NO_BF16):
        assert resolve_precision("fp32", "cpu", flags=flags) == "fp32"
        assert resolve_precision("bf16", "cpu", flags=flags) == "bf16"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", "cpu")


def test_auto_is_a_spec_value_and_old_stored_specs_keep_fp32():
    assert spec_from_dict({"training": {"precision": "auto"}}, where="s.toml").precision == "auto"
    with pytest.raises(
        GenoptError, match=r"s\.toml: unknown precision 'fp16': choose one of fp32, bf16, auto"
    ):
        spec_from_dict({"training": {"precision": "fp16"}}, where="s.toml")
    stored = StudySpec().to_dict()
    del stored["precision"]  # a spec stored before the field existed ran in fp32
    assert StudySpec.from_dict(stored).precision == "fp32"


@pytest.mark.parametrize(("flags", "expected"), [(frozenset({"avx512_bf16"}), "bf16"), (frozenset(), "fp32")])
def test_a_study_with_precision_auto_records_the_precision_each_trial_used(
    flags, expected, tmp_path, monkeypatch
):
    from genopt.study.runner import run_study

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("genopt.device.cpu_flags", lambda: flags)
    spec = StudySpec(precision="auto", max_epochs=1, train_limit=512, fid_samples=200, keep_checkpoints=1)
    result = run_study(
        spec,
        trials=2,
        study_name="auto",
        storage_url=f"sqlite:///{tmp_path / 'auto.db'}",
        progress=False,
        artifact_store=tmp_path / "artifacts",
    )
    assert [t.user_attrs["precision"] for t in result.study.trials] == [expected] * 2
    assert result.study.user_attrs["spec"]["precision"] == "auto"


def test_workers_share_gpus_round_robin_by_default():
    assert worker_gpus(5, gpus=2) == [0, 1, 0, 1, 0]
    assert worker_gpus(3, gpus=1) == [0, 0, 0]


def test_workers_per_gpu_fill_each_gpu_in_turn_then_the_cpu():
    assert worker_gpus(8, gpus=2, per_gpu=4) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert worker_gpus(8, gpus=3, per_gpu=2) == [0, 0, 1, 1, 2, 2, None, None]
    assert worker_gpus(2, gpus=4, per_gpu=1) == [0, 1]


def test_without_a_gpu_every_worker_trains_on_the_cpu():
    assert worker_gpus(4, gpus=0) == [None] * 4
    assert worker_gpus(4, gpus=0, per_gpu=2) == [None] * 4


def test_a_worker_gpu_is_named_through_the_inherited_visible_devices():
    assert cuda_visible_devices(1, None) == "1"
    assert cuda_visible_devices(1, "2,3") == "3"
    assert cuda_visible_devices(None, "2,3") == ""  # the CPU: the worker sees no GPU
