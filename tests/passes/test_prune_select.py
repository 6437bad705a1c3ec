"""Layer selection by name, regex or type; a selector that matches nothing is an error."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgepack.errors import RecipeError
from edgepack.keras_compat import keras
from edgepack.passes.select import LayerSelector


@pytest.fixture(scope="module")
def model():
    k = keras()
    L = k.layers
    return k.Sequential([k.Input((8, 8, 1)), L.Conv2D(4, 3, name="block1_conv"), L.ReLU(name="block1_relu"),
                         L.Conv2D(4, 3, name="block2_conv"), L.Flatten(name="flat"), L.Dense(3, name="head")])


def test_by_name_regex_type_and_union(model):
    assert LayerSelector(names=["head"]).select(model) == ["head"]
    assert LayerSelector(regex="block._conv").select(model) == ["block1_conv", "block2_conv"]
    assert LayerSelector(types=["ReLU", "Dense"]).select(model) == ["block1_relu", "head"]
    assert LayerSelector(names=["head"], regex="block1_.*").select(model) == ["block1_conv", "block1_relu", "head"]
    assert LayerSelector().select(model) == [lyr.name for lyr in model.layers]


def test_regex_must_match_whole_name(model):
    with pytest.raises(RecipeError, match="regex 'block1' matches no layer name"):
        LayerSelector(regex="block1").select(model)


def test_each_criterion_must_match(model):
    with pytest.raises(RecipeError, match="no layer named 'blok1_conv'.*known layers: block1_conv"):
        LayerSelector(names=["head", "blok1_conv"]).select(model, step="s")
    with pytest.raises(RecipeError, match="no layer of type 'Conv1D'.*Conv2D"):
        LayerSelector(types=["Conv1D"]).select(model)


def test_matches_only_unusable_layers_is_an_error(model):
    with pytest.raises(RecipeError, match="step 'cluster': layer selector .*names=\\['flat'\\].* matches no layer it"):
        LayerSelector(names=["flat"]).select(model, step="cluster", candidates=["block1_conv", "head"])


def test_bad_regex_and_unknown_keys_rejected():
    with pytest.raises(ValidationError, match="invalid regular expression"):
        LayerSelector(regex="conv(")
    with pytest.raises(ValidationError):
        LayerSelector.model_validate({"name": ["x"]})
