"""Every example: the committed generated module is current, and verify agrees.

"Current" is the same text, except the numbers an example computes with numpy's
vectorised ``exp``/``sin``/``cos`` (initial grids, feed profiles): numpy picks their
SIMD code by the CPU, and two machines may differ in the last bit (more after a
cancellation).  The module data (``base64`` blocks of float64) is therefore compared
within a few ulp of each block's largest number, and the text
around it (and its sha256 in the last line) exactly.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
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
    committed_text, committed_data = _split_data(committed.read_text(encoding="utf-8"))
    text, data = _split_data(text)
    assert committed_text == text, (
        f"generated/{example.stem}.py is out of date: run `dyngen build examples/{example.name}` "
        "and review the diff"
    )
    for old, new in zip(committed_data, data, strict=True):  # a few ulp of the block's largest number
        np.testing.assert_allclose(new, old, rtol=0.0, atol=8 * np.spacing(np.max(np.abs(new), initial=0.0)))


_DATA = re.compile(r'(b64decode\(  # [^\n]*float64[^\n]*\n)((?:\s*"[A-Za-z0-9+/=]*"\n)+)')
_TEXT_HASH = re.compile(r"; text sha256 [0-9a-f]{64}")


def _split_data(text: str) -> tuple[str, list[np.ndarray]]:
    """The module's text with its float64 data blocks and text hash left out, and the blocks."""
    blocks: list[np.ndarray] = []

    def take(found: re.Match) -> str:
        encoded = "".join(re.findall(r'"([^"]*)"', found.group(2)))
        blocks.append(np.frombuffer(base64.b64decode(encoded), dtype="<f8"))
        return found.group(1) + "<data>\n"

    return _TEXT_HASH.sub("", _DATA.sub(take, text)), blocks


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_interpreted_and_compiled_agree(example: Path) -> None:
    simulation = load_model(example)
    report = verify(simulation, 10.0, 0.1, rtol=1e-10, atol=1e-12)
    assert report.samples == 101
    assert report.max_rel_state < 1e-8, str(report)
    assert report.max_rel_signal < 1e-8, str(report)
