"""``checkpoint risk publish|apply|status`` and the CSV/JSON input reader, end to end on real files."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ID_KEY
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cli import main
from sync.server.publish.risk import RiskPublisher
from sync.server.publish.risk_inputs import RiskInputError, load_rows, parse_row
from sync.wire.identifiers import holder_hash
from sync.wire.keyfiles import load_ed25519_private, save_private_key, save_public_key
from sync.wire.risk.types import RiskStatus

EU_HASH = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    key = Ed25519PrivateKey.generate()
    save_private_key(tmp_path / "publisher.pem", key)
    data = tmp_path / "device"
    save_public_key(data / "keys" / "publisher_ed25519.pub.pem", key.public_key())
    config = tmp_path / "device.toml"
    config.write_text(f'[device]\ndata_dir = "{data}"\n', encoding="utf-8")
    ID_KEY.save(tmp_path / "holder_id.key")
    return tmp_path / "publisher.pem", tmp_path / "central", config


def test_parse_rows_accepts_ids_and_hex_keys(tmp_path: Path) -> None:
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(f"id,key,status,until\n 0790 123 ,,F0,\n,{EU_HASH.upper()},revoked,2030-01-31\n"
                        "0790456,,remove,\n", encoding="utf-8")
    changes = [c for n, r in enumerate(load_rows(csv_file), 1) for c in parse_row(r, f"row {n}", [ID_KEY])]
    assert changes == [(holder_hash("0790123", ID_KEY), RiskStatus.F0, None),
                       (bytes.fromhex(EU_HASH), RiskStatus.REVOKED, date(2030, 1, 31)),
                       (holder_hash("0790456", ID_KEY), None, None)]
    json_file = tmp_path / "in.json"
    json_file.write_text(json.dumps({"entries": [{"key": EU_HASH * 2, "status": "F1"}]}), encoding="utf-8")
    assert parse_row(load_rows(json_file)[0], "x") == [(bytes.fromhex(EU_HASH), RiskStatus.F1, None)]


@pytest.mark.parametrize(("row", "message"), [
    ({"status": "F0"}, "neither"),
    ({"id": "1", "key": EU_HASH, "status": "F0"}, "'key' alone"),
    ({"uci": "URN:UVCI:01:VN:ABCDEF", "key": EU_HASH, "status": "F0"}, "'key' alone"),
    ({"uci": "X1", "status": "F0"}, "not a certificate identifier"),
    ({"key": "zz", "status": "F0"}, "not hexadecimal"),
    ({"key": "abcd", "status": "F0"}, "32 or 64"),
    ({"id": "1", "status": "F9"}, "unknown status"),
    ({"id": "1", "status": "F0", "until": "31/01/2030"}, "row 7"),
])
def test_bad_rows_name_the_row(row: dict, message: str) -> None:
    with pytest.raises(RiskInputError, match=message):
        parse_row(row, "row 7", [ID_KEY])


def test_publish_apply_status_round_trip(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    key_file, central, config = setup
    runner = CliRunner()
    first = tmp_path / "first.csv"
    first.write_text("id,status\n" + "".join(f"ID{i},F0\n" for i in range(300)), encoding="utf-8")
    id_key = ["--id-key", str(tmp_path / "holder_id.key")]
    result = runner.invoke(main, ["risk", "publish", "--dir", str(central), "--key", str(key_file), *id_key,
                                  "--at", "2024-03-01T08:00:00+00:00", str(first)])
    assert result.exit_code == 1 and "covers" in result.output  # a list must say what it covers
    result = runner.invoke(main, ["risk", "publish", "--dir", str(central), "--key", str(key_file), *id_key,
                                  "--covers", "CP1:*", "--covers", "HC1:VN",
                                  "--at", "2024-03-01T08:00:00+00:00", str(first)])
    assert result.exit_code == 0, result.output
    assert "version 1" in result.output and "covers CP1:* HC1:VN" in result.output
    second = tmp_path / "second.json"
    second.write_text(json.dumps([{"id": "ID1", "status": "remove"}, {"key": EU_HASH, "status": "REVOKED"},
                                  {"id": "ID7", "uci": "URN:UVCI:01:VN:7Q3K9M2X8D4F1B6C", "status": "F0"}]),
                      encoding="utf-8")
    result = runner.invoke(main, ["risk", "publish", "--dir", str(central), "--key", str(key_file), *id_key,
                                  "--at", "2024-03-01T09:00:00+00:00", str(second)])
    assert result.exit_code == 0, result.output
    publisher = RiskPublisher(central, load_ed25519_private(key_file))
    snapshot = tmp_path / "snap.cbor"
    snapshot.write_bytes(publisher.snapshot())
    garbage = tmp_path / "garbage.cbor"
    garbage.write_bytes(b"\x83garbage")
    result = runner.invoke(main, ["risk", "apply", "--config", str(config), str(garbage), str(snapshot)])
    assert result.exit_code == 1
    assert "rejected" in result.output and "now version 2" in result.output
    result = runner.invoke(main, ["risk", "status", "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["version"] == 2 and status["entries"] == 301 and not status["needs_snapshot"]
    assert status["covers"] == ["CP1:*", "HC1:VN"] and status["refused"] is None
    assert status["published_at"] == "2024-03-01T09:00:00+00:00"


def test_publish_reports_bad_input_without_publishing(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    key_file, central, _ = setup
    bad = tmp_path / "bad.csv"
    bad.write_text("id,status\nA,F0\nB,F7\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["risk", "publish", "--dir", str(central), "--key", str(key_file),
                                       "--id-key", str(tmp_path / "holder_id.key"), "--covers", "CP1:*", str(bad)])
    assert result.exit_code == 1
    assert "line 3: unknown status 'F7'" in result.output  # the file's own line number
    assert "1 bad row(s) of 2, nothing published" in result.output
    assert not (central / "state.json").exists()
    unkeyed = tmp_path / "unkeyed.csv"
    unkeyed.write_text("id,status\nA,F0\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["risk", "publish", "--dir", str(central), "--key", str(key_file),
                                       "--covers", "CP1:*", str(unkeyed)])
    assert result.exit_code == 1 and "identifier key" in result.output
    assert not (central / "state.json").exists()


def test_publish_streams_csv_and_jsonl_and_lists_every_bad_line(setup: tuple[Path, Path, Path],
                                                                tmp_path: Path) -> None:
    key_file, central, _ = setup
    publish = ["risk", "publish", "--dir", str(central), "--key", str(key_file), "--covers", "CP1:*",
               "--id-key", str(tmp_path / "holder_id.key")]
    big = tmp_path / "list.csv"
    with big.open("w", encoding="utf-8") as fh:
        fh.write("id,status,until\n")
        for n in range(3000):
            fh.write(f"0790{n:08d},{'F0' if n % 3 == 0 else 'F1'},{'2199-01-01' if n % 2 else ''}\n")
        fh.write("079000000001,remove,\n")  # a later row for the same id wins: removed
    result = CliRunner().invoke(main, [*publish, str(big)])
    assert result.exit_code == 0, result.output
    assert "published version 1: 3,000 changes, 2,999 entries" in result.output

    lines = tmp_path / "more.jsonl"
    lines.write_text('{"id": "A", "status": "F0"}\n\n{"key": "' + "ab" * 16 + '", "status": "REVOKED"}\n',
                     encoding="utf-8")
    result = CliRunner().invoke(main, [*publish, str(lines)])
    assert result.exit_code == 0 and "3,001 entries" in result.output, result.output

    broken = tmp_path / "broken.csv"
    broken.write_text("id,status,until\n" + "".join(f"X{n},F9,\n" for n in range(30)) + "Y,F0,1999-01-01\n",
                      encoding="utf-8")
    result = CliRunner().invoke(main, [*publish, str(broken)])
    assert result.exit_code == 1 and "31 bad row(s) of 31, nothing published" in result.output
    assert "line 2: unknown status 'F9'" in result.output and "… 11 more" in result.output
    assert RiskPublisher(central, load_ed25519_private(key_file)).latest_version == 2  # unchanged


def test_parallel_readers_agree_with_one_reader_and_number_lines_across_the_file(tmp_path: Path) -> None:
    from sync.server.publish.risk_inputs import read_changes

    rows = ["id,status,until"] + [f"0790{n:08d},{'F0' if n % 2 else 'F1'},{'2030-01-01' if n % 3 else ''}"
                                  for n in range(4000)]
    rows.append("079000000007,remove,")  # the same id again near the end: the later row wins
    good = tmp_path / "good.csv"
    good.write_text("\n".join(rows) + "\n", encoding="utf-8")
    one, two, four = (read_changes(good, workers=n, id_keys=[ID_KEY]) for n in (1, 2, 4))
    assert len(one) == 4000 and (one == two).all() and (one == four).all()
    assert one["status"][one["key"] == np.frombuffer(holder_hash("079000000007", ID_KEY), "V16")[0]].tolist() == [0]

    rows[10] = "X,F9,"           # line 11, in the first part
    rows[3900] = "Y,F0,1999-01-01"  # line 3901, in the last part
    rows[2500] = "Z,F0,,extra"  # line 2501: more cells than columns
    bad = tmp_path / "bad.jsonl.csv"
    bad.write_text("\n".join(rows) + "\n", encoding="utf-8")
    for workers in (1, 2, 4):
        with pytest.raises(RiskInputError) as info:
            read_changes(bad, workers=workers, id_keys=[ID_KEY])
        message = str(info.value)
        assert "3 bad row(s) of 4001" in message, message
        assert message.index("line 11:") < message.index("line 2501:") < message.index("line 3901:")


@pytest.mark.parametrize("header", ["id,status,until", "until,status,citizen_id", "status,id",
                                    "id,name,status,until,note"])
def test_plain_rows_are_keyed_exactly_as_the_general_row_parser_keys_them(tmp_path: Path, header: str) -> None:
    """Large plain CSVs take a byte-level path; every odd row must come out as ``parse_row`` says."""
    from sync.server.publish.risk_inputs import read_changes
    from sync.wire.identifiers import IdentifierKey
    from sync.wire.risk.records import RECORD, encode_until, sort_unique

    rows = [  # (id, status, until) as an authority's export might spell them
        ("079000000001", "F0", "2030-01-01"), ("079 000 000 002", "f1", ""), ("abc123", "Revoked", ""),
        ("ＡＢＣ１２", "F0", ""), ("079000000004", " F0 ", " 2030-02-01 "), ("079000000005", "1", ""),
        ("079000000001", "remove", "not-a-date"),  # a later row for the same id wins; a removal's date is moot
        ("079000000006", "F1", "2031-06-30"), ("079000000006", "F0", ""), ("Abc123", "F1", "2031-06-30"),
    ] + [(f"0790{n:08d}", "F0" if n % 3 else "F1", "2030-01-01" if n % 2 else "") for n in range(10, 400)]
    names = header.split(",")
    lines = [header] + [",".join({"id": i, "citizen_id": i, "status": s, "until": u, "note": "",
                                  "name": "Nguyễn Văn A" if n % 4 == 0 else "Tran Van B"}[c] for c in names)
                        for n, (i, s, u) in enumerate(rows)]
    lines.insert(5, "")  # a blank line is skipped
    text = "\r\n".join(lines[:8]) + "\r\n" + "\n".join(lines[8:]) + "\n"  # CRLF and LF line ends mixed
    source = tmp_path / "list.csv"
    source.write_text(text, encoding="utf-8")
    keys = [ID_KEY, IdentifierKey.generate()]  # during a rotation every row is keyed with both

    expected = []
    for row in load_rows(source):
        for key, status, until in parse_row(row, "row", keys):
            expected.append((key, 0 if status is None else int(status), 0 if status is None else encode_until(until)))
    want = sort_unique(np.array(expected, RECORD))
    for workers in (1, 2):
        got = read_changes(source, workers=workers, id_keys=keys)
        assert got.tobytes() == want.tobytes()


def test_the_bulk_holder_hasher_is_the_holder_hash() -> None:
    from sync.wire.identifiers import IdentifierKey, holder_hasher, normalise_citizen_id

    for key in (ID_KEY, IdentifierKey.generate()):
        keyed = holder_hasher(key)
        for ident in ("079000000001", "abc123", "x" * 200, "Ａ１", "0"):
            assert keyed(normalise_citizen_id(ident).encode()) == holder_hash(ident, key)
    with pytest.raises(TypeError):
        holder_hasher(b"\0" * 32)  # a raw secret is refused: keys are typed


@pytest.mark.parametrize(("head", "megabytes"), [
    ("id,status\n079000000001,F0\n", 3),  # within one read of the file
    ("id,status\n079000000001,F0\n", 9),  # across reads
    ('{"id": "079000000001", "status": "F0"}\n', 3),  # JSON lines
    ('id,status\n"079000000001",F0\n', 2),  # a quoted CSV: read by the csv module
])
def test_a_line_without_end_is_refused_by_number_not_read_into_memory(tmp_path: Path, head: str,
                                                                      megabytes: int) -> None:
    from sync.server.publish.risk_inputs import MAX_LINE_BYTES, read_changes

    source = tmp_path / ("list.jsonl" if head.startswith("{") else "list.csv")
    with source.open("w", encoding="ascii") as fh:
        fh.write(head)
        fh.write("7" * (megabytes * MAX_LINE_BYTES))  # no line end: a broken export, or a hostile one
        fh.write("\n" + head.splitlines()[-1] + "\n")
    for workers in (1, 2):
        with pytest.raises(RiskInputError, match=rf"line {head.count(chr(10)) + 1}: longer than"):
            read_changes(source, workers=workers, id_keys=[ID_KEY])


def test_a_json_list_too_large_to_read_whole_is_refused_with_what_to_do(tmp_path: Path) -> None:
    from sync.server.publish.risk_inputs import MAX_WHOLE_BYTES, read_changes

    source = tmp_path / "list.json"
    with source.open("wb") as fh:
        fh.truncate(MAX_WHOLE_BYTES + 1)  # sparse: the size is what is checked, before any reading
    with pytest.raises(RiskInputError, match=r"too large to read whole: give a large list as CSV or JSON lines"):
        read_changes(source, id_keys=[ID_KEY])
