"""The CLI path a provisioner and an operator use: keys -> issue -> trust/policy bundles -> verify."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.cli import main
from sync.wire.identifiers import IdentifierKey
from sync.wire.keyfiles import save_private_key, save_public_key


def _run(args: list[str], stdin: str | None = None) -> str:
    result = CliRunner().invoke(main, args, input=stdin, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_issue_bundle_and_verify_with_config(tmp_path: Path) -> None:
    publisher = Ed25519PrivateKey.generate()
    save_private_key(tmp_path / "pub.pem", publisher)
    save_public_key(tmp_path / "keys" / "publisher_ed25519.pub.pem", publisher.public_key())
    out = _run(["keys", "--issuer", "HN-POLICE", "--alg", "ES256", "--out", str(tmp_path / "issuer.json"),
                "--not-before", "2026-01-01T00:00:00Z"])
    assert "kid=" in out
    _run(["keys", "--issuer", "FORGER", "--out", str(tmp_path / "forger.json"), "--not-before", "2026-01-01"])
    IdentifierKey.generate().save(tmp_path / "holder_id.key")
    common = ["--holder-id", "001099012345", "--id-key", str(tmp_path / "holder_id.key"), "--zone", "hn-zone-1",
              "--doses", "2", "--last-dose", "2026-01-02", "--issued-at", "2026-02-01T00:00:00Z"]
    good = _run(["issue", "--key", str(tmp_path / "issuer.json"), "--kind", "resident", *common,
                 "--days", "60", "--out", str(tmp_path / "good")]).strip()
    assert (tmp_path / "good.png").stat().st_size > 0 and (tmp_path / "good.txt").read_text().strip() == good
    expired = _run(["issue", "--key", str(tmp_path / "issuer.json"), "--kind", "travel_permit", *common,
                    "--days", "1", "--out", str(tmp_path / "expired")]).strip()
    forged = _run(["issue", "--key", str(tmp_path / "forger.json"), "--kind", "resident", *common,
                   "--out", str(tmp_path / "forged")]).strip()
    _run(["trust", "build", "--publisher-key", str(tmp_path / "pub.pem"), "--issuer-key",
          str(tmp_path / "issuer.json"), "--version", "1", "--out", str(tmp_path / "trust.cpenv")])
    (tmp_path / "policy.json").write_text(_run(["policy", "default", "--version", "2", "--checkpoint", "cp-7"]))
    _run(["policy", "seal", str(tmp_path / "policy.json"), "--publisher-key", str(tmp_path / "pub.pem"),
          "--out", str(tmp_path / "policy.cpenv")])
    shown = _run(["policy", "show", str(tmp_path / "policy.cpenv"), "--publisher-public-key",
                  str(tmp_path / "keys" / "publisher_ed25519.pub.pem")])
    assert json.loads(shown)["version"] == 2
    config = tmp_path / "device.toml"
    config.write_text(f'[device]\ncheckpoint = "cp-7"\ndata_dir = "{tmp_path}"\n')
    lines = _run(["verify", "--json", "--config", str(config), "--at", "2026-03-01T08:00:00Z"],
                 stdin="\n".join([good, expired, forged, "hello", ""]) + "\n").splitlines()
    verdicts = [json.loads(line) for line in lines]
    assert [v["verdict"] for v in verdicts] == ["CHECK", "REFUSE", "REFUSE", "CHECK"]
    assert verdicts[0]["reason"] in {"risk_list_missing", "risk_list_stale"}  # no risk list synced yet
    assert [v["reason"] for v in verdicts[1:]] == ["expired", "unknown_issuer", "not_a_pass"]
    assert verdicts[0]["kind"] == "resident" and verdicts[0]["format"] == "CP1"


def test_verify_reports_a_missing_bundle_clearly(tmp_path: Path) -> None:
    config = tmp_path / "device.toml"
    config.write_text(f'[device]\ndata_dir = "{tmp_path}"\n')
    result = CliRunner().invoke(main, ["verify", "--json", "--config", str(config)], input="x\n")
    assert result.exit_code != 0 and "key file not found" in result.output


def test_policy_schema_rejects_unknown_keys_like_the_loader() -> None:
    result = CliRunner().invoke(main, ["policy", "schema"], catch_exceptions=False)
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["additionalProperties"] is False and "checkpoint_zone" in schema["properties"]
