"""The data section's own rules: the reported split is never the trained one, and how held-out queries are carved."""

from __future__ import annotations

import pytest

from embedtune.config import ConfigError, DataConfig, build_config
from embedtune.config.data_section import TEST_SPLIT_BY


@pytest.mark.parametrize("overrides", [["data.eval_split=train"], ["data.eval_split=train", "data.test_fraction=0"]])
def test_reporting_on_the_train_split_is_refused_naming_the_setting(overrides):
    with pytest.raises(ConfigError) as error:
        build_config(overrides=["data.path=beir", *overrides])
    message = str(error.value)
    assert message.startswith("data.eval_split: 'train' is the split the run trains on")
    assert "report on test (the default), dev, or another split the folder ships" in message


@pytest.mark.parametrize("split", ["test", "dev", "heldout", "Train", "train2"])
def test_other_report_splits_are_accepted(split):
    assert DataConfig(path="beir", eval_split=split).eval_split == split


def test_test_split_by_defaults_to_query_and_takes_document():
    assert DataConfig(path="beir").test_split_by == "query" == TEST_SPLIT_BY[0]
    assert build_config(overrides=["data.path=beir", "data.test_split_by=document"]).data.test_split_by == "document"


@pytest.mark.parametrize("value", ["Document", "documents", "doc", "", "none"])
def test_test_split_by_rejects_other_values_naming_the_setting(value):
    with pytest.raises(ConfigError) as error:
        build_config(overrides=["data.path=beir", f"data.test_split_by={value}"])
    assert str(error.value).startswith("data.test_split_by: must be one of query, document, got ")


def test_test_split_by_is_listed_in_the_settings_help():
    from embedtune.cli.train import settings_help

    line = next(line for line in settings_help().splitlines() if "data.test_split_by" in line)
    assert "(query)" in line and "'document'" in line and "training positive" in line


def test_dev_split_by_follows_test_split_by_unless_set():
    assert DataConfig(path="beir").dev_carving == "query"
    assert DataConfig(path="beir", test_split_by="document").dev_carving == "document"
    assert DataConfig(path="beir", test_split_by="document", dev_split_by="query").dev_carving == "query"
    config = build_config(overrides=["data.path=beir", "data.dev_split_by=document"]).data
    assert (config.dev_split_by, config.dev_carving, config.test_split_by) == ("document", "document", "query")


@pytest.mark.parametrize("value", ["Document", "doc", "", "test"])
def test_dev_split_by_rejects_other_values_naming_the_setting(value):
    with pytest.raises(ConfigError) as error:
        build_config(overrides=["data.path=beir", f"data.dev_split_by={value}"])
    assert str(error.value).startswith("data.dev_split_by: must be one of query, document (or unset), got ")
