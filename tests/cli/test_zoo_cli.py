"""`edgekit zoo list` and `edgekit zoo info` through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgekit import zoo
from edgekit.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["zoo", *args])


def test_list_shows_every_model_with_its_numbers():
    result = invoke("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for name in zoo.list_models():
        card = zoo.card(name)
        row = next((line for line in lines if line.split() and line.split()[0] == name), None)
        assert row is not None, f"{name} missing from `zoo list`:\n{result.stdout}"
        assert card.task in row and ("yes" if card.weights else "no") in row.split()
    v2 = next(line for line in lines if line.startswith("mobilenet_v2 "))
    assert "1x3x224x224 NCHW" in v2 and "3.50 M" in v2 and "301 M" in v2


def test_list_json_carries_full_cards():
    result = invoke("list", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [d["name"] for d in data] == zoo.list_models()
    v3 = next(d for d in data if d["name"] == "mobilenet_v3_small")
    card = zoo.card("mobilenet_v3_small")
    assert v3["params"] == card.params and v3["macs"] == card.macs
    assert v3["mean"] == list(card.mean) and v3["input_shape"] == list(card.input_shape)
    assert v3["config"] == {"width_mult": 1.0, "num_classes": 1000, "dropout": 0.2, "reduced_tail": False}


def test_list_filters_by_task():
    result = invoke("list", "--task", "classify", "--json")
    assert result.exit_code == 0
    names = [d["name"] for d in json.loads(result.stdout)]
    assert names == zoo.list_models("classify") and "mobilenet_v1" in names
    assert all(d["task"] == "classify" for d in json.loads(result.stdout))


def test_list_rejects_an_unknown_task_with_a_usage_error():
    result = invoke("list", "--task", "detect")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "unknown task 'detect'" in result.stderr
    assert "classify" in result.stderr


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v1"])
def test_info_shows_the_card(name):
    result = invoke("info", name)
    assert result.exit_code == 0, result.stderr
    card = zoo.card(name)
    text = " ".join(result.stdout.split())  # undo rich's wrapping
    assert card.paper.split(",")[0] in text and "arxiv.org" in text
    assert "mean (0.485, 0.456, 0.406)" in text and "std (0.229, 0.224, 0.225)" in text
    assert f"{card.params:,}" in text and f"{card.macs:,}" in text
    assert "width_mult=1.0" in text and "num_classes=1000" in text
    assert "weights=PATH" in text and card.license.split()[0] in text


def test_info_json_round_trips_the_card():
    result = invoke("info", "mobilenet_v3_large", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    expected = json.loads(json.dumps(zoo.card("mobilenet_v3_large").to_dict()))
    assert {k: v for k, v in data.items() if k != "config"} == expected
    assert "download.pytorch.org" in data["weights_source"]


def test_info_unknown_name_is_one_line_with_suggestions():
    result = invoke("info", "mobilenet_v3")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("edgekit: error: unknown zoo model 'mobilenet_v3'")
    assert result.stderr.count("\n") == 1 and "did you mean" in result.stderr


def test_zoo_without_a_subcommand_shows_help():
    result = invoke()
    assert "list" in result.output and "info" in result.output
