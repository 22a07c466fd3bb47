"""The compiled templates kept between processes (``dyngen/template_cache.py``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import jinja2
import pytest

from dyngen.template_cache import TemplateCodeCache

TEMPLATE = "{% for x in items %}{{ x * 2 }},{% endfor %}"


def _environment(templates: Path, *cache: Path) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)), bytecode_cache=TemplateCodeCache(*cache))


def _no_compiling(env: jinja2.Environment) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the template was compiled, not loaded from the cache")

    env.compile = refuse


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "t.j2").write_text(TEMPLATE)
    return folder


def test_a_second_environment_loads_the_compiled_template(templates: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _environment(templates, cache).get_template("t.j2").render(items=[1, 2]) == "2,4,"
    (entry,) = cache.glob("*.jinja")
    data = entry.read_bytes()
    assert hashlib.sha256(data[32:]).digest() == data[:32]
    env = _environment(templates, cache)
    _no_compiling(env)
    assert env.get_template("t.j2").render(items=[3]) == "6,"


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_a_damaged_entry_is_compiled_again_and_replaced(templates: Path, tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    _environment(templates, cache).get_template("t.j2")
    (entry,) = cache.glob("*.jinja")
    data = entry.read_bytes()
    damaged = {"truncate": data[: len(data) // 2], "flip": data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:], "empty": b""}
    entry.write_bytes(damaged[damage])
    assert _environment(templates, cache).get_template("t.j2").render(items=[5]) == "10,"
    assert entry.read_bytes() == data  # healed
    env = _environment(templates, cache)
    _no_compiling(env)
    env.get_template("t.j2")


def test_an_edited_template_is_compiled_again(templates: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _environment(templates, cache).get_template("t.j2")
    (templates / "t.j2").write_text("{{ items|length }}")
    assert _environment(templates, cache).get_template("t.j2").render(items=[1, 2, 3]) == "3"


def test_a_folder_that_cannot_be_written_falls_back_to_the_next(templates: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder would be")
    fallback = tmp_path / "fallback"
    assert _environment(templates, blocked, fallback).get_template("t.j2").render(items=[1]) == "2,"
    assert len(list(fallback.glob("*.jinja"))) == 1
    env = _environment(templates, blocked, fallback)
    _no_compiling(env)
    env.get_template("t.j2")
    # no folder can be written: rendering still works
    assert _environment(templates, blocked).get_template("t.j2").render(items=[2]) == "4,"
