"""The documentation site: its API reference, its snippets, its fault table, and the build.

The examples themselves are tests under ``docs/examples/`` and run with the suite.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pycurl
import pytest

import curlfault
from curlfault import faults

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"

# pymdownx.snippets, one line: --8<-- "path[:section]". The pages use the block form
# (a line --8<--, one path per line, a line --8<--), which `ruff format` leaves alone inside
# a Python code fence; it rewrites the one-line form as the expression `--8 < --"path"`.
SNIPPET_LINE = re.compile(r'^[ \t]*--8<--[ \t]+"([^"]+)"[ \t]*$')
SNIPPET_FENCE = re.compile(r"^[ \t]*--8<--[ \t]*$")


def headings(page: Path, level: int) -> list[str]:
    """The code-formatted headings of ``level`` in ``page``: "## `Name`" gives "Name"."""
    pattern = rf"^{'#' * level} `([^`]+)`[ \t]*$"
    return re.findall(pattern, page.read_text(encoding="utf-8"), flags=re.MULTILINE)


def snippet_refs() -> list[tuple[Path, str]]:
    """(page, "path[:section]") for every snippet included by a page under docs/."""
    refs = []
    for page in sorted(DOCS.rglob("*.md")):
        in_block = False
        for line in page.read_text(encoding="utf-8").splitlines():
            if SNIPPET_FENCE.match(line):
                in_block = not in_block
            elif in_block and line.strip():
                refs.append((page, line.strip()))
            elif (m := SNIPPET_LINE.match(line)) is not None:
                refs.append((page, m.group(1)))
        assert not in_block, f"{page.relative_to(ROOT)}: a --8<-- block is not closed"
    return refs


# the API reference -----------------------------------------------------------------------


def test_api_reference_documents_exactly_the_public_names() -> None:
    documented = headings(DOCS / "api.md", 2)
    twice = sorted({name for name in documented if documented.count(name) > 1})
    assert not twice, f"docs/api.md documents {twice} more than once"
    missing = sorted(set(curlfault.__all__) - set(documented))
    extra = sorted(set(documented) - set(curlfault.__all__))
    assert not missing, f"curlfault.__all__ names missing from docs/api.md: {missing}"
    assert not extra, f"docs/api.md documents names not in curlfault.__all__: {extra}"


def test_api_reference_members_exist() -> None:
    members = headings(DOCS / "api.md", 3)
    assert members
    # Some documented members are instance attributes: look them up on real instances.
    net = curlfault.FakeNetwork()
    try:
        http = net.http("docs.test")
        instances = {
            "FakeNetwork": net,
            "HttpEndpoint": http,
            "Endpoint": net.refuse("down.docs.test"),
            "Route": http.get("/"),
        }
        for heading in members:
            owner, _, member = heading.partition(".")
            assert owner in curlfault.__all__, f"### `{heading}`: {owner} is not a public name"
            target = instances.get(owner, getattr(curlfault, owner))
            assert hasattr(target, member), (
                f"docs/api.md documents `{heading}`, which does not exist"
            )
    finally:
        net.close()


def test_api_reference_documents_every_fault() -> None:
    documented = {
        heading.split(".", 1)[1]
        for heading in headings(DOCS / "api.md", 3)
        if heading.startswith("faults.")
    }
    assert documented == set(faults.__all__)


# snippets --------------------------------------------------------------------------------


def test_every_snippet_exists() -> None:
    refs = snippet_refs()
    assert refs, "no --8<-- snippets found in docs/"
    for page, ref in refs:
        name, _, section = ref.partition(":")
        path = ROOT / name
        where = f"{page.relative_to(ROOT)} includes {ref!r}"
        assert path.is_file(), f"{where}, which does not exist"
        if section:
            text = path.read_text(encoding="utf-8")
            for edge in ("start", "end"):
                marker = f"--8<-- [{edge}:{section}]"
                assert marker in text, f"{where}, but {name} has no {marker!r}"


def test_every_example_is_shown_in_the_docs() -> None:
    shown = {ref.partition(":")[0] for _, ref in snippet_refs()}
    for example in sorted(EXAMPLES.glob("test_*.py")):
        name = example.relative_to(ROOT).as_posix()
        assert name in shown, f"{name} is not included in any page"


# the CURLcode table ----------------------------------------------------------------------


def test_faults_table_has_the_rows_of_curlfault_matrix() -> None:
    from curlfault._matrix import CASES

    text = (DOCS / "faults.md").read_text(encoding="utf-8")
    table = text.split("<!-- matrix:start -->", 1)[1].split("<!-- matrix:end -->", 1)[0]
    rows = [
        (label, int(code)) for label, code in re.findall(r"^\| `([^`]+)` \| (\d+) ", table, re.M)
    ]
    assert rows == [(case.label, case.expected) for case in CASES], (
        "docs/faults.md's CURLcode table and curlfault matrix's cases differ; "
        "run `curlfault matrix` and update the table"
    )


# the settings snippet --------------------------------------------------------------------


def test_the_curlcode_names_pycurl_lacks_are_the_ones_the_table_says() -> None:
    # docs/faults.md tells users which of the table's names pycurl has no E_ constant for.
    from curlfault._matrix import _CURLCODE_NAMES

    lacking = {c: n for c, n in _CURLCODE_NAMES.items() if getattr(pycurl, f"E_{n}", None) != c}
    assert lacking == {
        8: "WEIRD_SERVER_REPLY",
        92: "HTTP2_STREAM",
        98: "SSL_CLIENTCERT",
        100: "TOO_LARGE",
    }
    assert pycurl.E_FTP_WEIRD_SERVER_REPLY == 8
    text = " ".join((DOCS / "faults.md").read_text(encoding="utf-8").split())
    assert "pycurl 7.49 spells 8 `pycurl.E_FTP_WEIRD_SERVER_REPLY`" in text
    assert "no constant for 92 (`HTTP2_STREAM`), 98 (`SSL_CLIENTCERT`) or 100 (`TOO_LARGE`)" in text


def test_the_settings_snippet_is_valid_configuration(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml((EXAMPLES / "curlfault-settings.toml").read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_inner=textwrap.dedent(
            """
            def test_settings(curlfault, request):
                assert curlfault.strict is True
                assert request.config.getini("curlfault_trace") == "failed"
            """
        )
    )
    result = pytester.runpytest("--strict-config", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=1)


# the build -------------------------------------------------------------------------------


def test_mkdocs_build_is_strict_clean() -> None:
    pytest.importorskip("mkdocs")
    with tempfile.TemporaryDirectory(prefix="curlfault-site-") as site:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "mkdocs",
                "build",
                "--strict",
                "--config-file",
                str(ROOT / "mkdocs.yml"),
                "--site-dir",
                site,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}{proc.stderr}"
        assert (Path(site) / "index.html").is_file()
        assert not (Path(site) / "examples").exists(), "the examples are not pages"
