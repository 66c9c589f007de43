"""Devices and precision: what --mixed-precision auto picks from the CPU's flags."""
from colorgan import config, devices


def test_auto_precision_follows_the_device(monkeypatch):
    cfg = config.make_config()
    monkeypatch.setattr(devices, "cpu_bfloat16_flags", lambda: ["avx512_bf16"])
    policy, reason = devices.precision_policy(cfg)
    assert policy == "mixed_bfloat16" and "avx512_bf16" in reason
    monkeypatch.setattr(devices, "cpu_bfloat16_flags", lambda: [])
    assert devices.precision_policy(cfg)[0] == "float32"
    assert devices.precision_policy(config.make_config(mixed_precision="bfloat16"))[0] == "mixed_bfloat16"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert devices.cpu_bfloat16_flags(str(cpuinfo)) == ["avx512_bf16"]
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert devices.cpu_bfloat16_flags(str(cpuinfo)) == []
    assert devices.cpu_bfloat16_flags(str(tmp_path / "missing")) == []


def test_a_cap_on_onednn_below_bfloat16_leaves_no_native_bfloat16(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # an AVX2 host imitated: auto picks float32 there
    assert devices.cpu_bfloat16_flags(str(cpuinfo)) == []
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert devices.cpu_bfloat16_flags(str(cpuinfo)) == ["avx512_bf16"]
