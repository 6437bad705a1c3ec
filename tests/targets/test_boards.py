"""Device profiles: every shipped YAML validates; bad ones and unknown names are clear errors."""

from pathlib import Path

import pytest
import yaml

from edgepack.profiles import DeviceProfile, list_profiles, load_profile, load_profile_file, profiles_dir
from edgepack.errors import UsageError

REQUIRED_BOARDS = {"nucleo-l4r5zi", "arduino-nano-33-ble-sense", "esp32-s3-devkitc-1", "raspberry-pi-pico",
                   "nucleo-h743zi2", "alif-ensemble-e7-hp"}


def test_shipped_profiles_all_load_and_cover_the_boards():
    names = list_profiles()
    assert REQUIRED_BOARDS <= set(names)
    for n in names:
        p = load_profile(n)
        assert p.name == n
        assert 0 < p.runtime_flash_bytes < p.flash_bytes and 0 < p.runtime_ram_bytes < p.ram_bytes
        assert p.flash_budget_bytes == p.flash_bytes - p.runtime_flash_bytes
        assert p.power.active_mw > p.power.idle_mw
        assert all(p.sources[k] for k in ("clock_hz", "flash_bytes", "ram_bytes", "power.active_mw"))


def test_npu_board_is_int8_only_and_m0plus_has_no_fpu():
    assert load_profile("alif-ensemble-e7-hp").npu.startswith("ethos-u55")
    assert load_profile("alif-ensemble-e7-hp").int8_only
    pico = load_profile("raspberry-pi-pico")
    assert pico.core == "cortex-m0plus" and pico.fpu == "none" and pico.int8_only


def test_unknown_profile_lists_known_ones():
    with pytest.raises(UsageError) as e:
        load_profile("nucleo-l4r5zi-typo")
    for n in list_profiles():
        assert n in str(e.value)


def _raw(name="nucleo-l4r5zi"):
    return yaml.safe_load((profiles_dir() / f"{name}.yaml").read_text())


@pytest.mark.parametrize("mutate, needle", [
    (lambda r: r["sources"].pop("ram_bytes"), "without a source: ram_bytes"),
    (lambda r: r.update(clock_hz=-5), "clock_hz"),
    (lambda r: r.update(core="cortex-m99"), "core"),
    (lambda r: r.update(flash_kb=12), "flash_kb"),
    (lambda r: r.update(cost_model={"cycles_per_mac": {"conv2d": 1.0}}), "upper-case"),
    (lambda r: r.update(cost_model={"cycles_per_mac": {"CONV_2D": -1.0}}), ">= 0"),
])
def test_invalid_profiles_are_rejected_naming_the_field(tmp_path: Path, mutate, needle):
    raw = _raw()
    mutate(raw)
    f = tmp_path / "nucleo-l4r5zi.yaml"
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(UsageError, match=needle):
        load_profile_file(f)


def test_cost_model_block_is_optional_and_validated(tmp_path: Path):
    raw = _raw()
    raw["cost_model"] = {"cycles_per_mac": {"CONV_2D": 1.5, "DEFAULT": 3.0},
                         "cycles_per_element": {"ADD": 4.0}, "cycles_per_op": 2000.0}
    f = tmp_path / "nucleo-l4r5zi.yaml"
    f.write_text(yaml.safe_dump(raw))
    p = load_profile(str(f))
    assert p.cost_model.cycles_per_mac["CONV_2D"] == 1.5
    assert DeviceProfile.model_validate(_raw()).cost_model is None


def test_profile_name_must_match_file(tmp_path: Path):
    f = tmp_path / "other.yaml"
    f.write_text(yaml.safe_dump(_raw()))
    with pytest.raises(UsageError, match="differs from the file name"):
        load_profile_file(f)
