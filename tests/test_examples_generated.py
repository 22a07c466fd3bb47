"""Every example: the committed generated module is current, and verify agrees."""

from __future__ import annotations

from pathlib import Path

import pytest

from dyngen.flatten import flatten
from dyngen.interpreted import verify
from dyngen.lower import lower
from dyngen.modelfile import load_model
from dyngen.render import render
from dyngen.trace import trace

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_generated_module_is_current(example: Path) -> None:
    simulation = load_model(example)
    spec = trace(simulation.systems, simulation.model_name, str(example.parent))
    text = render(lower(flatten(spec)), example.name).text
    committed = ROOT / "generated" / f"{example.stem}.py"
    assert committed.is_file(), f"missing {committed}: run `dyngen build examples/{example.name}`"
    assert committed.read_text(encoding="utf-8") == text, (
        f"generated/{example.stem}.py is out of date: run `dyngen build examples/{example.name}` "
        "and review the diff"
    )


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_interpreted_and_compiled_agree(example: Path) -> None:
    simulation = load_model(example)
    report = verify(simulation, 10.0, 0.1, rtol=1e-10, atol=1e-12)
    assert report.samples == 101
    assert report.max_rel_state < 1e-8, str(report)
    assert report.max_rel_signal < 1e-8, str(report)
