"""'did you mean' on a mistyped config key: the closest schema key, from the command line or a YAML."""

from __future__ import annotations

import pytest

from sweettok.config import ConfigError, did_you_mean, load_config, schema_keys


@pytest.mark.parametrize("override, suggestion", [
    ("training.max_train_stepz=1", "training.max_train_steps"),  # a typo in the leaf
    ("trainng.max_train_steps=1", "training"),  # a typo in the section
    ("max_train_steps=1", "training.max_train_steps"),  # the right name in the wrong section
    ("experiment.outputdir=x", "experiment.output_dir"),
    ("model.tokenizer.spatial_quantizer.priorr=x", "model.tokenizer.spatial_quantizer.prior"),
])
def test_mistyped_override_names_the_closest_schema_key(override, suggestion):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value).endswith(f"(did you mean '{suggestion}'?)")
    assert f"'{override.split('=')[0].split('.')[0]}" in str(err.value)  # the bad key is still named


def test_a_name_in_several_sections_lists_each():
    assert did_you_mean("prior") == (" (did you mean 'model.tokenizer.spatial_quantizer.prior' or "
                                     "'model.tokenizer.temporal_quantizer.prior'?)")


def test_no_suggestion_when_nothing_is_close_or_the_value_is_wrong():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["foo.bar=1"])
    assert "did you mean" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["training.max_train_steps=abc"])
    assert "did you mean" not in str(err.value) and "training.max_train_steps" in str(err.value)


def test_mistyped_key_in_a_yaml_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  per_gpu_batch_sise: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert str(err.value).endswith("(did you mean 'training.per_gpu_batch_size'?)")


def test_schema_keys_hold_sections_and_leaves():
    keys = schema_keys()
    assert {"training", "training.max_train_steps", "model.tokenizer.spatial_quantizer.kind"} <= set(keys)
