"""The ``curlfault`` command: the fault matrix, the self-check, arguments and exit codes."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pycurl
import pytest

import curlfault
from curlfault import UnexpectedConnection, UsageError, faults
from curlfault._cli import main
from curlfault._intercept import real_curl
from curlfault._matrix import CASES, URL, Case, Row, http_endpoint, run_matrix
from curlfault._matrix_render import render

ROOT = Path(__file__).resolve().parent.parent


def _json_run(capsys: pytest.CaptureFixture[str], *args: str, **kwargs: Any) -> tuple[int, Any]:
    status = main(["matrix", "--format", "json", *args], **kwargs)
    return status, json.loads(capsys.readouterr().out)


def _assert_all_as_documented(doc: dict[str, Any]) -> None:
    __tracebackhide__ = True
    bad = [r for r in doc["rows"] if not r["ok"]]
    assert not bad, json.dumps(bad, indent=2)
    for row in doc["rows"]:
        assert row["observed"] == row["expected"], row
        assert row["ledger"] == "ok", row
        assert row["result"] == "OK", row


# the matrix ----------------------------------------------------------------------------------
def test_matrix_json_every_fault_as_documented(capsys: pytest.CaptureFixture[str]) -> None:
    status, doc = _json_run(capsys)
    assert status == 0
    assert doc["ok"] is True
    assert doc["pycurl"] == pycurl.version
    _assert_all_as_documented(doc)
    # Every case over every transport, in case order.
    assert len(doc["rows"]) == 3 * len(CASES)
    assert {(r["fault"], r["transport"]) for r in doc["rows"]} == {
        (c.label, t) for c in CASES for t in ("socketpair", "tcp", "listener")
    }


def test_matrix_documents_the_required_codes(capsys: pytest.CaptureFixture[str]) -> None:
    _, doc = _json_run(capsys, "--transport", "socketpair")
    codes = {r["fault"]: r["observed"] for r in doc["rows"]}
    assert codes["no fault (control GET)"] == 0
    assert codes["refuse() via connection_faults"] == 7
    assert codes["net.refuse(host)"] == 7
    assert codes["unknown host, strict"] == 7
    assert codes["close(after_bytes=0) before any byte"] == 52
    assert codes["close(after_bytes=20) inside headers"] == 0
    assert codes["close(after_bytes=500) mid-body"] == 18
    assert codes["reset(after_bytes=500) mid-body"] == 56
    strict = next(r for r in doc["rows"] if r["fault"] == "unknown host, strict")
    assert strict["problems"] == ["UnexpectedConnection"]
    reset = next(r for r in doc["rows"] if r["fault"].startswith("reset("))
    assert reset["served_over"] == ["tcp"]  # an RST needs a real TCP pair


def test_every_fault_class_has_a_matrix_row() -> None:
    """A fault added to curlfault.faults without a matrix row fails here."""
    classes = [
        obj
        for obj in vars(faults).values()
        if inspect.isclass(obj)
        and issubclass(obj, faults.Fault)
        and "curlcode" in vars(obj)  # concrete faults define their code
        and obj.modelled  # declared but not produced yet: declaring it raises instead
    ]
    assert classes
    for cls in classes:
        assert any(case.label.startswith(f"{cls.name}(") for case in CASES), cls


def test_transport_option_limits_rows(capsys: pytest.CaptureFixture[str]) -> None:
    status, doc = _json_run(capsys, "--transport", "tcp")
    assert status == 0
    assert {r["transport"] for r in doc["rows"]} == {"tcp"}
    assert len(doc["rows"]) == len(CASES)


def test_markdown_has_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "--format", "markdown", "--transport", "socketpair"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert pycurl.version in lines[0]
    header = next(i for i, line in enumerate(lines) if line.startswith("| fault |"))
    assert lines[header].startswith("| fault | transport | expected | observed |")
    assert lines[header + 1].startswith("|---|")
    body = [line for line in lines[header + 2 :] if line.startswith("|")]
    assert len(body) == len(CASES)
    assert all(line.count(" | ") == lines[header].count(" | ") for line in body)
    assert "| `close(after_bytes=0) before any byte` |" in out


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"curlfault {curlfault.__version__} fault matrix on ")
    assert pycurl.version in lines[0]
    assert lines[2].split()[:4] == ["fault", "transport", "expected", "observed"]
    assert "MISMATCH" not in out.replace("0 MISMATCH", "")
    assert "LEAK" not in out
    assert lines[-1] == f"{3 * len(CASES)} rows: {3 * len(CASES)} OK, 0 MISMATCH"
    assert "52 GOT_NOTHING" in out
    assert "socketpair->tcp" in out  # the reset rows say which transport they really used


# failures give exit 1 ------------------------------------------------------------------------
def test_wrong_expectation_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    wrong = Case("close(after_bytes=0) claimed as 18", http_endpoint(faults.close(0)), URL, 18)
    status, doc = _json_run(capsys, "--transport", "socketpair", cases=[wrong])
    assert status == 1
    assert doc["ok"] is False
    (row,) = doc["rows"]
    assert (row["expected"], row["observed"], row["result"]) == (18, 52, "MISMATCH")
    assert row["ledger"] == "ok"
    assert row["message"] == "Empty reply from server"


def test_wrong_expectation_text_says_mismatch(capsys: pytest.CaptureFixture[str]) -> None:
    wrong = Case("healthy claimed as 7", http_endpoint(), URL, 7)
    assert main(["matrix", "--transport", "tcp"], cases=[wrong]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out.splitlines()[3]
    assert out.splitlines()[-1] == "1 rows: 0 OK, 1 MISMATCH"


def test_unexpected_check_problem_is_a_mismatch() -> None:
    # Right code, but the case does not expect check() to report the unknown host.
    case = Case("unknown host, problem not expected", http_endpoint(), "http://nope.test/", 7)
    (row,) = run_matrix(["socketpair"], [case])
    assert row.observed == 7
    assert row.problems == ("UnexpectedConnection",)
    assert not row.ok


def test_expected_problem_that_does_not_happen_is_a_mismatch() -> None:
    case = Case("healthy, problem wrongly expected", http_endpoint(), URL, 0, UnexpectedConnection)
    (row,) = run_matrix(["tcp"], [case])
    assert (row.observed, row.problems) == (0, ())
    assert not row.ok


def test_unbalanced_ledger_fails_the_row() -> None:
    row = Row(
        label="leaky",
        transport="socketpair",
        expected=0,
        observed=0,
        message="",
        ms=1.0,
        ledger_ok=False,
        expected_problem="",
        problems=(),
        served_over=("socketpair",),
    )
    assert not row.ok
    assert row.to_dict()["ledger"] == "LEAK"
    assert "LEAK" in render([row], "text")
    assert "MISMATCH" in render([row], "markdown")


# validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transports": ["carrier-pigeon"]}, "transport 'carrier-pigeon' is not known"),
        ({"transports": ["tcp"], "timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_run_matrix_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        run_matrix(cases=[], **kwargs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"label": ""}, "label must be a non-empty str"),
        ({"setup": None}, "setup must be callable"),
        ({"expected": "7"}, "expected must be an int CURLcode"),
    ],
)
def test_case_rejects_bad_fields(args: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"label": "x", "setup": http_endpoint(), "url": URL, "expected": 0}
    with pytest.raises(UsageError, match=message):
        Case(**{**fields, **args})


def test_render_rejects_unknown_format() -> None:
    with pytest.raises(UsageError, match="format 'xml' is not known"):
        render([], "xml")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: command"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["matrix", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["matrix", "--transport", "carrier-pigeon"], "argument --transport: invalid choice"),
        (["matrix", "--timeout", "0"], "must be a positive number of seconds"),
        (["matrix", "--timeout", "soon"], "expected a number of seconds"),
        (["selfcheck", "--extra"], "unrecognized arguments: --extra"),
    ],
)
def test_bad_arguments_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "usage: curlfault" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    expected = f"curlfault {curlfault.__version__} ({pycurl.version})"
    assert capsys.readouterr().out.strip() == expected


@pytest.mark.parametrize("argv", [["--help"], ["matrix", "--help"], ["selfcheck", "--help"]])
def test_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "exit status: 0" in out
    if argv[0] == "matrix":
        assert "--transport {socketpair,tcp,listener,all}" in out


# selfcheck -----------------------------------------------------------------------------------
def test_selfcheck(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selfcheck"]) == 0
    out = capsys.readouterr().out
    assert pycurl.version in out
    assert f"libcurl  {pycurl.version_info()[1]}" in out
    assert "FAIL" not in out
    assert "ok    pycurl.Curl is restored after intercept()" in out
    assert "descriptor ledger balances: 1 opened, 0 leaked" in out
    assert out.splitlines()[-1] == "selfcheck passed"
    assert pycurl.Curl is real_curl()


# the module entry point ----------------------------------------------------------------------
def test_python_m_curlfault_matrix_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "curlfault", "matrix", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["pycurl"] == pycurl.version
    _assert_all_as_documented(doc)
