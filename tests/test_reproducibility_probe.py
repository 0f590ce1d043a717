"""The reproducibility probe: it says identical for identical runs and different for different ones."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

from reproducibility_probe import (  # noqa: E402
    RunResult,
    Setting,
    compare,
    library_paths,
    run_settings,
    settings_for,
    supported_capabilities,
    table,
)


def result(losses: list[str], fingerprint: str = "f", validation_loss: str = "0.5") -> RunResult:
    return RunResult(fingerprint=fingerprint, losses=losses, validation_loss=validation_loss, capability=None,
                     seconds=0.0)


def test_compare_is_bit_for_bit():
    same = compare(result(["0.1", "0.2"]), result(["0.1", "0.2"]))
    assert same == {"fingerprint_same": True, "losses_same": True, "first_different_step": None,
                    "largest_loss_difference": 0.0, "validation_loss_same": True}
    last_bit = compare(result(["0.1", "0.2"]), result(["0.1", repr(0.2 + 2.0**-54)]))
    assert not last_bit["losses_same"] and last_bit["first_different_step"] == 2
    assert last_bit["fingerprint_same"] and last_bit["validation_loss_same"]
    shorter = compare(result(["0.1"]), result(["0.1", "0.2"]))
    assert not shorter["losses_same"] and shorter["first_different_step"] == 2
    other = compare(result(["0.1"], "a", "0.5"), result(["0.1"], "b", "0.50000001"))
    assert not other["fingerprint_same"] and not other["validation_loss_same"]


def test_settings_follow_the_cpu_flags():
    assert supported_capabilities(set()) == ["default"]
    assert supported_capabilities({"avx2", "fma"}) == ["default", "avx2"]
    assert supported_capabilities({"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"}) == [
        "default", "avx2", "avx512"]
    names = [s.name for s in settings_for({"avx2", "fma"})]
    assert "ATEN_CPU_CAPABILITY=avx512" not in names and "ONEDNN_MAX_CPU_ISA=AVX2" in names
    assert not any("avx2" in name.lower() and "ATEN" in name for name in [s.name for s in settings_for(set())])
    rows = {s.name: s for s in settings_for({"avx2", "fma"})}
    assert all(row.reuses in rows and row.reference in rows for row in rows.values() if row.reuses)


def test_library_paths_read_the_verbose_logs():
    log = "\n".join([
        "MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 architecture Intel(R) Advanced "
        "Vector Extensions 2 (Intel(R) AVX2) enabled processors, Lnx 2.10GHz lp64 gnu_thread",
        "MKL_VERBOSE SGEMM(T,N,3072,1024,768,0x1,0x2,768,0x3,768,0x4,0x5,3072) 52.02ms CNR:COMPATIBLE Dyn:0 NThr:2",
        "onednn_verbose,v1,info,cpu,isa:Intel AVX2",
        "onednn_verbose,v1,primitive,exec,cpu,eltwise,jit:avx2,forward_training,data:f32,,alg:eltwise_gelu_erf,64x1,2.5",
    ])
    assert library_paths(log) == {
        "mkl_code_path": "Intel(R) Advanced Vector Extensions 2 (Intel(R) AVX2) enabled processors",
        "mkl_calls": ["SGEMM CNR:COMPATIBLE"], "onednn_isa": "Intel AVX2", "onednn_primitives": ["cpu,eltwise,jit:avx2"]}
    assert library_paths("")["onednn_primitives"] == []


def test_probe_finds_repeats_identical_and_another_seed_different(tiny_bert, shared_glue, tmp_path):
    """Real short `gluebox train` runs in their own processes: a setting against itself (1
    thread, and the default) is identical to the last bit; another seed is not, from step 1."""
    settings = [
        Setting("default"),
        Setting("default (again)"),
        Setting("1 thread", threads=1, reference="1 thread"),
        Setting("1 thread (again)", threads=1, reference="1 thread"),
        Setting("seed 43", args=("--seed", "43")),
        Setting("seed 43 (reused)", reference="1 thread", reuses="seed 43"),
    ]
    results, comparisons = run_settings(tiny_bert, str(shared_glue / "MRPC"), settings, tmp_path, jobs=3)
    assert set(comparisons) == {"default (again)", "1 thread (again)", "seed 43", "seed 43 (reused)"}
    for name in ("default (again)", "1 thread (again)"):
        assert comparisons[name]["losses_same"] and comparisons[name]["fingerprint_same"], name
        assert comparisons[name]["validation_loss_same"], name
        assert results[name] is not results[name.replace(" (again)", "")], "a repeat must be its own run"
    assert len(results["default"].losses) == 4 and results["default"].capability
    seed = comparisons["seed 43"]
    assert not seed["losses_same"] and seed["first_different_step"] == 1 and seed["largest_loss_difference"] > 0
    assert not seed["validation_loss_same"]
    assert results["seed 43 (reused)"] is results["seed 43"]


def test_table_marks_differences_and_names_the_reference():
    settings = [Setting("default"), Setting("MKL_CBWR=COMPATIBLE", {"MKL_CBWR": "COMPATIBLE"}),
                Setting("t1 vs t2", threads=1, reference="MKL_CBWR=COMPATIBLE", reuses="MKL_CBWR=COMPATIBLE")]
    same = {"fingerprint_same": True, "losses_same": True, "first_different_step": None,
            "largest_loss_difference": 0.0, "validation_loss_same": True}
    differs = {"fingerprint_same": True, "losses_same": False, "first_different_step": 2,
               "largest_loss_difference": 3e-8, "validation_loss_same": False}
    adamw = {"fused vs for-loop": {"parameters_same": False, "tensors_equal": 1, "tensors": 3,
                                   "largest_parameter_difference": 1e-9, "losses_same": True}}
    report = {
        "models": {"tiny": {}},
        "settings": [vars(s) for s in settings],
        "train": {"tiny": {"comparisons": {"MKL_CBWR=COMPATIBLE": differs, "t1 vs t2": same}}},
        "linear": {"runs": {s.name: {"capability": "AVX512"} for s in settings},
                   "comparisons": {"MKL_CBWR=COMPATIBLE": {"linear_same": False, "kernels_differ": []},
                                   "t1 vs t2": {"linear_same": True, "kernels_differ": ["gelu"]}}},
        "adamw": {"tiny": {"comparisons": adamw}},
    }
    rows = table(report).splitlines()
    assert rows[0].startswith("| setting | threads | capability | tiny fingerprint same? | tiny step losses same?")
    cbwr = next(row for row in rows if row.startswith("| MKL_CBWR=COMPATIBLE |"))
    assert cbwr.split(" | ")[3:7] == ["yes", "**no** (from step 2, up to 3.0e-08)", "**no**", "**no** |"]
    t1 = next(row for row in rows if row.startswith("| t1 vs t2 (against MKL_CBWR=COMPATIBLE) |"))
    assert t1.endswith("| yes | yes | yes | yes; also gelu |")
    assert "| fused vs for-loop | **no** (2/3 tensors, up to 1.0e-09) | yes |" in rows
    assert not any(row.startswith("| default |") for row in rows)
