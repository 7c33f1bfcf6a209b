"""The fleet registry: one checkpoints.csv for provisioning and the server, checked whole first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.config import load_config
from sync.server.registry import Registry, RegistryError, device_checkpoint, parse_checkpoints
from sync.server.settings import init_data_dir

GOOD = """checkpoint_id,name,province,district,zone,latitude,longitude,policy,devices
HN-017,Cầu Chương Dương,Hà Nội,Hoàn Kiếm,zone-1,21.0245,105.8603,zone1-entry,2
QN-003,Cửa khẩu Móng Cái,Quảng Ninh,Móng Cái,border,21.5247,107.9661,province-border,1
"""


def test_rows_become_checkpoints_with_their_devices():
    rows = parse_checkpoints(GOOD)
    assert [c.checkpoint_id for c in rows] == ["HN-017", "QN-003"]
    assert rows[0].name == "Cầu Chương Dương" and rows[0].zone == "zone-1" and rows[0].latitude == 21.0245
    assert rows[0].device_ids == ["HN-017-1", "HN-017-2"] and rows[1].device_ids == ["QN-003-1"]
    assert device_checkpoint("HN-017-2") == "HN-017" and device_checkpoint("LONE") == "LONE"


def test_every_bad_cell_is_reported_by_line_and_column():
    bad = ("checkpoint_id,name,province,latitude,longitude,devices\n"
           "HN-1,Một,Hà Nội,21.0,105.8,1\n"
           ",Hai,Hà Nội,,,1\n"                     # line 3: no id
           "HN-1,Ba,Hà Nội,,,1\n"                  # line 4: duplicate id
           "HN 4,Bốn,,95,105,0\n"                  # line 5: bad id, no province, latitude, devices
           "HN-5,Năm,Hà Nội,21.0,,1\n")            # line 6: latitude without longitude
    with pytest.raises(RegistryError) as info:
        parse_checkpoints(bad, "fleet.csv")
    problems = info.value.problems
    assert "line 3, column checkpoint_id: required, empty" in problems
    assert "line 4, column checkpoint_id: 'HN-1' already on line 2" in problems
    assert any(p.startswith("line 5, column checkpoint_id:") for p in problems)
    assert "line 5, column province: required, empty" in problems
    assert "line 5, column latitude: 95.0 is outside -90..90" in problems
    assert any(p.startswith("line 5, column devices:") for p in problems)
    assert "line 6: give both latitude and longitude, or neither" in problems
    assert str(info.value).startswith("fleet.csv: 7 problem(s), nothing written")


def test_header_problems_name_the_columns():
    with pytest.raises(RegistryError, match=r"missing column.*province"):
        parse_checkpoints("checkpoint_id,name\nA,B\n")
    with pytest.raises(RegistryError, match=r"unknown column.*zoen"):
        parse_checkpoints("checkpoint_id,name,province,zoen\nA,B,C,D\n")


@pytest.fixture
def server_data(tmp_path: Path) -> Path:
    data = tmp_path / "server"
    init_data_dir(data)  # 'checkpoint server init'
    return data


def test_provision_from_csv_writes_named_bundles_and_the_server_loads_the_same_file(tmp_path, server_data):
    csv_path = tmp_path / "checkpoints.csv"
    csv_path.write_text(GOOD, encoding="utf-8")
    out = tmp_path / "bundles"
    result = CliRunner().invoke(main, ["provision", "--server-data", str(server_data), "--server-url",
                                       "https://cp.example", "--checkpoints", str(csv_path), "--out", str(out),
                                       "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert [b["device_id"] for b in summary["bundles"]] == ["HN-017-1", "HN-017-2", "QN-003-1"]
    assert sorted(p.name for p in out.iterdir()) == ["HN-017-1", "HN-017-2", "QN-003-1"]  # no partial folders
    config = load_config(out / "HN-017-2" / "config.toml")
    assert config.device.id == "HN-017-2" and config.device.checkpoint == "HN-017"
    assert config.status.checkpoint_name == "Cầu Chương Dương"
    assert (out / "HN-017-2" / "enroll.token").read_text().strip() != (out / "HN-017-1" / "enroll.token").read_text()

    loaded = CliRunner().invoke(main, ["server", "--data-dir", str(server_data), "registry", str(csv_path)])
    assert loaded.exit_code == 0, loaded.output
    registry = Registry.load(server_data)
    assert registry.checkpoint_of("HN-017-2").name == "Cầu Chương Dương"
    assert registry.device_ids() == summary_ids(summary)


def summary_ids(summary: dict) -> list[str]:
    return [b["device_id"] for b in summary["bundles"]]


def test_a_bad_row_writes_nothing(tmp_path, server_data):
    csv_path = tmp_path / "checkpoints.csv"
    csv_path.write_text(GOOD + "HN-018,,Hà Nội\n", encoding="utf-8")
    out = tmp_path / "bundles"
    result = CliRunner().invoke(main, ["provision", "--server-data", str(server_data), "--server-url",
                                       "https://cp.example", "--checkpoints", str(csv_path), "--out", str(out)])
    assert result.exit_code == 1 and "line 4, column name: required, empty" in result.output
    assert not out.exists()  # not one bundle, not even the good rows'
    Registry([*parse_checkpoints(GOOD)]).save(server_data)
    refused = CliRunner().invoke(main, ["server", "--data-dir", str(server_data), "registry", str(csv_path)])
    assert refused.exit_code == 1 and "nothing written" in refused.output
    assert len(Registry.load(server_data).checkpoints) == 2  # the registry in use stayed
