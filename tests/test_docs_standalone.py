"""The repository stands alone: no file cites documents that live outside it.

Rule packs, profiles, code and docs cite the fault catalogue, the device maps
and the storage schema as ``docs/<file>.md#<anchor>``. Every such citation
must name a doc in the repo and an anchor that exists in it, either as the
GitHub slug of a heading or as an explicit ``<a id="...">``.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Built from parts so that this file does not match its own patterns.
OUTSIDE_DOCS = ("FAULTS" + ".md", "DEVICES" + ".md", "DESIGN" + ".md")
OUTSIDE_PATHS = re.compile(r"\.\./+shared\b|/work/" + r"shared\b|\bshared/domain\b")

CITATION = re.compile(r"\bdocs/([\w.-]+\.md)#([\w-]+)")
CITING_DIRS = ("rules/", "config/profiles/", "monitord/", "drivers/", "simulators/", "docs/", "README.md")


def tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for name in out.split("\0"):
        path = ROOT / name
        if not name or path.is_symlink() or not path.is_file():
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]*>", "", heading)  # inline HTML such as <a id=...></a>
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@cache
def anchors(doc: Path) -> frozenset[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    in_fence = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        found.update(re.findall(r"""<a\s+(?:id|name)=["']([^"']+)["']""", line))
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


def test_slug_follows_github() -> None:
    assert slug("Pumps: booster sets, sump pumps") == "pumps-booster-sets-sump-pumps"
    assert slug("Elevators: GB/T 24476-2017 fault codes") == "elevators-gbt-24476-2017-fault-codes"
    assert slug("`ticket` measurement") == "ticket-measurement"


def test_no_file_cites_documents_outside_the_repo() -> None:
    offenders = []
    for path in tracked_text_files():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(name in line for name in OUTSIDE_DOCS) or OUTSIDE_PATHS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == [], "cite docs/faults.md, docs/devices.md or docs/storage.md instead"


def citations() -> list[tuple[str, str, str]]:
    found = []
    for path in tracked_text_files():
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(CITING_DIRS):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for doc, anchor in CITATION.findall(line):
                found.append((f"{rel}:{n}", doc, anchor))
    return found


def test_the_packs_profiles_and_code_cite_the_docs() -> None:
    cited_from = {where.split("/")[0] for where, _doc, _anchor in citations()}
    assert {"rules", "config", "monitord"} <= cited_from


def test_every_cited_anchor_exists() -> None:
    missing = []
    for where, doc, anchor in citations():
        path = ROOT / "docs" / doc
        if not path.is_file():
            missing.append(f"{where}: docs/{doc} does not exist")
        elif anchor not in anchors(path):
            missing.append(f"{where}: docs/{doc} has no anchor #{anchor}")
    assert missing == []


def test_links_between_docs_resolve() -> None:
    """Relative links such as ``[x](devices.md#pump-set)`` and ``[x](#pump)`` inside docs/."""
    missing = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if "://" in target or target.startswith("mailto:"):
                    continue
                file_part, _, anchor = target.partition("#")
                doc = (path.parent / file_part).resolve() if file_part else path
                where = f"{path.relative_to(ROOT)}:{n}"
                if not doc.exists():
                    missing.append(f"{where}: {target} does not exist")
                elif anchor and doc.suffix == ".md" and anchor not in anchors(doc):
                    missing.append(f"{where}: {target} has no such anchor")
    assert missing == []
