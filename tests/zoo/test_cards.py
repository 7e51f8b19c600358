"""The zoo's card index (edgekit/zoo/cards.json) matches the registry, and `edgekit zoo list`
/ `zoo info` answer from it without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgekit import zoo
from edgekit.zoo.cards import build_index, load_index

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx', 'coremltools', 'litert_torch'):
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, Block())
from edgekit.cli import main
main(sys.argv[1:])
"""


def test_index_matches_the_registry():
    pytest.importorskip("torch")
    assert load_index() == json.loads(json.dumps(build_index())), \
        "edgekit/zoo/cards.json is stale: run `python -m edgekit.zoo.cards`"


def test_cards_from_the_index_equal_the_registry_cards():
    pytest.importorskip("torch")
    from edgekit.zoo.registry import get_entry

    for name in zoo.list_models():
        assert zoo.card(name) == get_entry(name).card, name


@pytest.mark.parametrize("args", [["zoo", "list"], ["zoo", "list", "--json"], ["zoo", "info", "espcn_x2"]])
def test_zoo_list_and_info_need_no_torch(args):
    r = subprocess.run([sys.executable, "-c", BLOCK, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "espcn_x2" in r.stdout


def test_unknown_name_suggests_without_torch():
    r = subprocess.run([sys.executable, "-c", BLOCK, "zoo", "info", "espcn_x3"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "did you mean espcn_x2" in r.stderr and "Traceback" not in r.stderr
