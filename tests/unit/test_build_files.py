"""The build files keep `make install` and `make demo` quiet and lean."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_license_is_an_spdx_string_for_a_setuptools_that_reads_it():
    # A table (`{text = ...}`) makes setuptools warn at every install and build.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    requires = project["build-system"]["requires"]
    floor = next(r for r in requires if r.startswith("setuptools"))
    assert tuple(int(n) for n in re.findall(r"\d+", floor)[:1]) >= (77,), floor
    # An explicit package-dir: the editable install is a plain .pth, the one mode that warns not.
    assert project["tool"]["setuptools"]["package-dir"] == {"": "."}


def _recipe(makefile: str, target: str) -> tuple[str, str]:
    found = re.search(rf"^{target}:(.*)\n((?:\t.*\n)*)", makefile, re.M)
    assert found, target
    return found.group(1), found.group(2)


def test_the_demo_does_not_build_the_schema_registry_and_the_tests_do():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("up", "demo"):
        prerequisites, recipe = _recipe(makefile, target)
        assert "schema-registry" not in prerequisites + recipe, target
    for target in ("test", "integration"):
        prerequisites, _ = _recipe(makefile, target)
        assert "schema-registry" in prerequisites.split(), target
    _, recipe = _recipe(makefile, "schema-registry")
    assert "scripts/schema-registry fetch" in recipe
