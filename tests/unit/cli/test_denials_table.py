"""``signet denials`` for auditors: identical denials grouped, a table that fits, a summary, CSV, hostile input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.unit.cli.audit_fixture import at, line, readme_log, unmatched, unsigned, wrong_signer
from tests.unit.cli.helpers import document, signet
from webhook.commands.table import Column, cut, fit


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "signet.log"
    path.write_text(readme_log())
    return path


def table_and_summary(out: str) -> tuple[list[str], list[str]]:
    table, summary = out.rstrip("\n").split("\n\n")
    return table.splitlines(), summary.splitlines()


def test_identical_denials_are_one_row_with_count_and_times(log: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    run = signet(capsys, "denials", "--from-log", log, "--wide")
    rows, summary = table_and_summary(run.out)
    assert run.code == 0 and len(rows) == 4  # header + 3 groups of 6 denials; the admission is not one
    web = next(r for r in rows if "Deployment/web" in r)
    assert web.startswith("2026-03-02T09:40:00Z  2026-03-02T09:10:00Z  3  ")
    assert summary[0] == "6 denials (3 distinct) from 2026-03-02T09:10:00Z to 2026-03-02T10:05:00Z"
    assert summary[1:] == ["  by policy:    acme-releases 5, (no policy) 1",
                           "  by namespace: shop 4, payments 2",
                           "  by reason:    wrong signer 3, no signatures 2, no policy matches 1"]
    ungrouped = signet(capsys, "denials", "--from-log", log, "--no-group")
    assert len(table_and_summary(ungrouped.out)[0]) == 7


@pytest.mark.parametrize("columns", [80, 120, 160])
def test_the_table_fits_the_width_and_cuts_with_an_ellipsis(log: Path, columns: int,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    rows, _ = table_and_summary(signet(capsys, "denials", "--from-log", log).out)
    assert max(len(r) for r in rows) <= columns
    assert any("…" in r for r in rows)
    assert all(r[:16].count("-") == 2 for r in rows[1:])  # times and counts are never cut
    wide = signet(capsys, "denials", "--from-log", log, "--wide").out
    assert "…" not in wide and "https://search.sigstore.dev/?logIndex=48213907" in wide
    assert "sha256:" + "4e" * 32 in wide  # the full digest


def test_json_and_csv_carry_every_field(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    as_json = document(signet(capsys, "denials", "--from-log", log, "-o", "json"))
    web = next(d for d in as_json["denials"] if d["workload"] == "Deployment/web")
    assert (web["count"], web["firstTime"], web["lastTime"]) == (3, "2026-03-02T09:10:00Z", "2026-03-02T09:40:00Z")
    assert web["logIndex"] == 48213907 and web["digest"] == "sha256:" + "4e" * 32
    assert as_json["summary"]["byReason"] == {"wrong signer": 3, "no signatures": 2, "no policy matches": 1}
    rows = list(csv.DictReader(io.StringIO(signet(capsys, "denials", "--from-log", log, "-o", "csv").out)))
    assert len(rows) == 3 and rows[0]["workload"] == "Deployment/web" and rows[0]["count"] == "3"
    assert rows[0]["rekorUrl"] == "https://search.sigstore.dev/?logIndex=48213907"


def test_since_and_until(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = signet(capsys, "denials", "--from-log", log, "--since", "2026-03-02T09:50:00Z",
                 "--until", "2026-03-02T10:00:00Z", "-o", "json")
    assert [(d["workload"], d["count"]) for d in json.loads(run.out)["denials"]] == [
        ("Deployment/checkout", 1), ("Job/migrate", 1)]
    backwards = signet(capsys, "denials", "--from-log", log, "--since", "1h", "--until", "2h")
    assert backwards.code == 2 and "--until" in backwards.err


def test_a_generated_name_is_shown_never_a_question_mark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "signet.log"
    path.write_text(line(at(9, 0), "ci", "shop", "Pod", "", [unsigned("nginx:1")], generate_name="web-7d4b9-") + "\n"
                    + line(at(9, 1), "ci", "shop", "Job", "", [unmatched("x:1")]).replace('"name":""', '"name":null')
                    + "\n")
    records = json.loads(signet(capsys, "denials", "--from-log", path, "-o", "json").out)["denials"]
    workloads = {r["workload"] for r in records}
    assert "?" not in "".join(workloads)
    # The audit line names the object by metadata.name, else generateName; with neither it says so.
    assert workloads <= {"Pod/web-7d4b9-…", "Pod/(no name)", "Job/(no name)"}


def test_hostile_events_cannot_reach_the_terminal_or_a_spreadsheet(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    hostile = wrong_signer("ghcr.io/acme/web:v1\x1b]0;pwned\x07")
    entry = json.loads(line(at(9, 0), "=HYPERLINK(\"http://x\")", "shop", "Pod", "p", [hostile]))
    entry["images"][0]["reason"] = "\x1b[2J\x1b[31mcleared"
    path = tmp_path / "signet.log"
    path.write_text(json.dumps(entry) + "\n")
    table = signet(capsys, "denials", "--from-log", path, "--wide").out
    assert "\x1b" not in table and "\x07" not in table
    rows = list(csv.DictReader(io.StringIO(signet(capsys, "denials", "--from-log", path, "-o", "csv").out)))
    assert rows[0]["user"].startswith("'=")


def test_fit_gives_way_from_the_widest_column() -> None:
    columns = [Column("TIME", shrink=False), Column("A", minimum=4), Column("B", minimum=4)]
    assert fit(columns, [16, 10, 300], None) == [16, 10, 300]
    assert fit(columns, [16, 10, 300], 80) == [16, 10, 50]
    assert fit(columns, [16, 30, 300], 60) == [16, 20, 20]
    assert cut("ghcr.io/acme/payments-api:v2.4.1", 16, "middle") == "ghcr.i…pi:v2.4.1"
    assert cut("short", 16) == "short" and cut("abcdef", 4) == "abc…"
