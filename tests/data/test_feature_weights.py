"""Feature-weight configs: loading (JSON and YAML), combining, and turning a record's neg_features into weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedtune.config import DataConfig
from embedtune.data.feature_weights import FeatureWeights, load_feature_weights
from embedtune.data.prepare import prepare_data
from embedtune.data.training_file import load_triplets
from embedtune.data.types import TrainingExample
from embedtune.errors import DataError
from tests.data.prepare_files import make_folder

FEATURES = {"location": 2.5, "price": 2.0, "amenities": 1.5}
GOOD = '{"query": "q0", "pos": ["p0"]}'


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, data: object) -> Path:
    return write(path, json.dumps(data))


def write_lines(path: Path, lines: list[str]) -> Path:
    return write(path, "".join(line + "\n" for line in lines))


def rental(i: int, neg_features: list[list[str]]) -> dict[str, object]:
    negs = [f"listing {i}.{j} in the wrong place" for j in range(len(neg_features))]
    return {
        "query": f"two-room flat {i}",
        "pos": [f"listing {i} that fits"],
        "neg": negs,
        "neg_features": neg_features,
    }


# ------------------------------------------------------------------------------------------------------- combining


@pytest.mark.parametrize(
    ("combine", "expected"),
    [("max", 2.5), ("sum", 4.5), ("product", 5.0)],
)
def test_each_combine_resolves_as_configured(combine: str, expected: float) -> None:
    weights = FeatureWeights(dict(FEATURES), default=0.5, combine=combine)

    assert weights.weight(["location", "price"]) == pytest.approx(expected)
    assert weights.weight(["amenities"]) == 1.5
    assert weights.weight([]) == 0.5


def test_defaults_are_max_and_one() -> None:
    weights = FeatureWeights(dict(FEATURES))
    assert (weights.default, weights.combine, weights.source) == (1.0, "max", None)
    assert weights.weight(["price", "amenities", "location"]) == 2.5
    assert weights.weight(()) == 1.0


def test_weight_rejects_unknown_feature_and_overflow() -> None:
    with pytest.raises(KeyError):
        FeatureWeights(dict(FEATURES)).weight(["size"])
    with pytest.raises(ValueError, match="above the float32 maximum"):
        FeatureWeights({"a": 3e38, "b": 3e38}, combine="sum").weight(["a", "b"])
    with pytest.raises(ValueError, match="below the smallest normal float32"):
        FeatureWeights({"a": 1e-30, "b": 1e-30}, combine="product").weight(["a", "b"])
    with pytest.raises(ValueError, match="unknown combine 'avg'"):
        FeatureWeights(dict(FEATURES), combine="avg")


def test_known_features_are_sorted_and_cut() -> None:
    assert FeatureWeights(dict(FEATURES)).known_features() == "amenities, location, price"
    many = FeatureWeights({f"f{i:02d}": 1.0 for i in range(25)}).known_features()
    assert many.startswith("f00, f01,") and many.endswith("f19, ... (25 in all)")


# --------------------------------------------------------------------------------------------------------- loading


def test_yaml_and_json_load_to_equal_configs(tmp_path: Path) -> None:
    data = {"features": {"location": 2.5, "price": 2, "amenities": 1.5}, "default": 1, "combine": "sum"}
    from_json = load_feature_weights(write_json(tmp_path / "weights.json", data))
    yaml_text = "features:\n  location: 2.5\n  price: 2\n  amenities: 1.5e0\ndefault: 1\ncombine: sum\n"
    from_yaml = load_feature_weights(write(tmp_path / "weights.yaml", yaml_text))
    from_yml = load_feature_weights(write(tmp_path / "WEIGHTS.YML", yaml_text))

    assert from_json == from_yaml == from_yml == FeatureWeights(FEATURES, default=1.0, combine="sum")
    assert all(isinstance(weight, float) for weight in [*from_yaml.features.values(), from_yaml.default])
    assert (from_json.source, from_yaml.source) == (tmp_path / "weights.json", tmp_path / "weights.yaml")


def test_default_and_combine_are_optional(tmp_path: Path) -> None:
    loaded = load_feature_weights(write(tmp_path / "w.yml", "features: {location: 2.5}\n"))
    assert loaded == FeatureWeights({"location": 2.5}, default=1.0, combine="max")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_feature_weights(tmp_path / "nope.json")
    assert err.value.path == tmp_path / "nope.json"
    assert (err.value.line, err.value.field, err.value.message) == (None, None, "file not found")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    folder = tmp_path / "weights.json"
    folder.mkdir()
    with pytest.raises(DataError) as err:
        load_feature_weights(folder)
    assert err.value.path == folder and "cannot read" in err.value.message


@pytest.mark.parametrize(
    ("name", "text", "line", "fragment"),
    [
        ("w.txt", '{"features": {"a": 1}}', None, "expected a .json, .yaml or .yml file"),
        ("w.json", '{"features": {"a": 1},\n "default": }', 2, "malformed JSON"),
        ("w.yaml", "features: {a: 1\n", 2, "malformed YAML"),
        ("w.json", "[1, 2]", None, "expected a mapping with 'features' at the top level, got array"),
        ("w.yaml", "", None, "got an empty file"),
        ("w.yaml", "- a\n- b\n", None, "got array"),
    ],
)
def test_unreadable_configs(tmp_path: Path, name: str, text: str, line: int | None, fragment: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(DataError) as err:
        load_feature_weights(path)
    assert err.value.path == path and err.value.line == line
    assert fragment in err.value.message
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize(
    ("data", "field", "fragment"),
    [
        ({"features": {"a": 1}, "weights": {}}, "weights", "unknown key; expected one of features, default, combine"),
        ({"default": 1.0}, "features", "missing required field"),
        ({"features": [["a", 1]]}, "features", "expected a mapping of feature names to weights, got array"),
        ({"features": {}}, "features", "expected at least one feature"),
        ({"features": {" ": 1.0}}, "features", "empty feature name"),
        ({"features": {"price": "2.5"}}, "features.price", "expected a number, got str"),
        ({"features": {"price": True}}, "features.price", "expected a number, got bool"),
        ({"features": {"price": None}}, "features.price", "expected a number, got NoneType"),
        ({"features": {"price": 0}}, "features.price", "expected a weight > 0"),
        ({"features": {"price": -2.0}}, "features.price", "expected a weight > 0"),
        ({"features": {"price": 1e39}}, "features.price", "above the float32 maximum"),
        ({"features": {"price": 10**400}}, "features.price", "expected a finite number"),
        ({"features": {"price": 1e-40}}, "features.price", "below the smallest normal float32"),
        ({"features": {"a": 1}, "default": "high"}, "default", "expected a number, got str"),
        ({"features": {"a": 1}, "default": 0}, "default", "expected a weight > 0"),
        (
            {"features": {"a": 1}, "combine": "avg"},
            "combine",
            "unknown combine 'avg'; expected one of max, sum, product",
        ),
        ({"features": {"a": 1}, "combine": 3}, "combine", "unknown combine 3"),
    ],
)
def test_bad_json_configs_name_the_field(tmp_path: Path, data: dict[str, object], field: str, fragment: str) -> None:
    path = write_json(tmp_path / "weights.json", data)
    with pytest.raises(DataError) as err:
        load_feature_weights(path)
    assert (err.value.path, err.value.line, err.value.field) == (path, None, field)
    assert fragment in err.value.message
    assert str(err.value).startswith(f"{path}: field '{field}':")


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("features: {price: abc}", "features.price", "expected a number, got 'abc'"),
        ("features: {price: true}", "features.price", "expected a number, got 'true'"),
        ("features: {price: }", "features.price", "expected a number, got ''"),
        ("features: {price: [1]}", "features.price", "expected a number, got array"),
        ("features: {price: 0x10}", "features.price", "expected a number, got '0x10'"),
        ("features: {price: .inf}", "features.price", "expected a finite number"),
        ("features: {price: .NaN}", "features.price", "expected a finite number"),
        ("features: {price: -1}", "features.price", "expected a weight > 0"),
        ("features: {price: 1e39}", "features.price", "above the float32 maximum"),
        ("features: [price]", "features", "expected a mapping of feature names to weights, got array"),
        ("features:", "features", "expected a mapping of feature names to weights, got string"),
        ("features: {a: 1}\ndefault: nan", "default", "expected a number, got 'nan'"),
        ("features: {a: 1}\ncombine: MAX", "combine", "unknown combine 'MAX'"),
        ("features: {a: 1}\nDefault: 1", "Default", "unknown key"),
    ],
)
def test_bad_yaml_configs_name_the_field(tmp_path: Path, text: str, field: str, fragment: str) -> None:
    path = write(tmp_path / "weights.yaml", text + "\n")
    with pytest.raises(DataError) as err:
        load_feature_weights(path)
    assert (err.value.path, err.value.line, err.value.field) == (path, None, field)
    assert fragment in err.value.message


# ------------------------------------------------------------------------------------------ records: neg_features


def test_neg_features_become_neg_weights(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "rentals.jsonl",
        [
            json.dumps(rental(0, [["price"], ["location", "price"], []])),
            '{"query": "q1", "pos": ["p1"], "neg": ["n1"], "neg_weights": [0.5]}',
            '{"query": "q2", "pos": ["p2"], "neg": ["n2"]}',
            '{"query": "q3", "pos": ["p3"], "neg": [], "neg_features": []}',
        ],
    )
    weights = FeatureWeights(dict(FEATURES), default=0.75, combine="max")

    examples = load_triplets(path, weights)

    assert examples[0].neg_weights == (2.0, 2.5, 0.75)
    assert examples[0].neg == (
        "listing 0.0 in the wrong place",
        "listing 0.1 in the wrong place",
        "listing 0.2 in the wrong place",
    )
    assert examples[1:] == [
        TrainingExample(query="q1", pos=("p1",), neg=("n1",), neg_weights=(0.5,)),
        TrainingExample(query="q2", pos=("p2",), neg=("n2",), neg_weights=(1.0,)),
        TrainingExample(query="q3", pos=("p3",)),
    ]


def record(**fields: object) -> str:
    return json.dumps({"query": "q", "pos": ["p"], **fields})


@pytest.mark.parametrize(
    ("line", "field", "fragment"),
    [
        (record(neg=["n"], neg_weights=[1], neg_features=[[]]), "neg_features", "not both"),
        (record(neg_features=[["price"]]), "neg_features", "neg_features given without neg"),
        (record(neg=["n"], neg_features="price"), "neg_features", "expected a list of lists of feature names"),
        (record(neg=["n"], neg_features={"price": 1}), "neg_features", "got dict"),
        (record(neg=["a", "b"], neg_features=[[]]), "neg_features", "expected 2 feature lists (one per neg), got 1"),
        (record(neg=["a", "b"], neg_features=[[], "price"]), "neg_features[1]", "expected a list of feature names"),
        (record(neg=["a", "b"], neg_features=[[], [3]]), "neg_features[1][0]", "expected a feature name (string)"),
        (record(neg=["a", "b"], neg_features=[[], [None]]), "neg_features[1][0]", "got NoneType"),
        (record(neg=["a", "b"], neg_features=[[], ["price"] * 2]), "neg_features[1][1]", "'price' given twice"),
    ],
)
def test_bad_neg_features_name_line_and_field(tmp_path: Path, line: str, field: str, fragment: str) -> None:
    path = write_lines(tmp_path / "train.jsonl", [GOOD, line])
    with pytest.raises(DataError) as err:
        load_triplets(path, FeatureWeights(dict(FEATURES)))
    assert (err.value.path, err.value.line, err.value.field) == (path, 2, field)
    assert fragment in err.value.message
    assert str(err.value).startswith(f"{path}:2: field '{field}':")


def test_unknown_feature_lists_the_known_ones(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", [GOOD, json.dumps(rental(1, [["price"], [], ["size"]]))])
    with pytest.raises(DataError) as err:
        load_triplets(path, FeatureWeights(dict(FEATURES)))
    assert (err.value.line, err.value.field) == (2, "neg_features[2][0]")
    assert err.value.message == "unknown feature 'size'; known: amenities, location, price"


def test_neg_features_without_a_weight_config(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "train.jsonl", [GOOD, json.dumps(rental(1, [["price"]]))])
    with pytest.raises(DataError) as err:
        load_triplets(path)
    assert (err.value.path, err.value.line, err.value.field) == (path, 2, "neg_features")
    assert "set data.feature_weights" in err.value.message


@pytest.mark.parametrize(
    ("combine", "features", "fragment"),
    [
        ("sum", {"a": 3e38, "b": 3e38, "c": 1.0}, "above the float32 maximum"),
        ("product", {"a": 1e20, "b": 1e20, "c": 1.0}, "above the float32 maximum"),
        ("product", {"a": 1e-20, "b": 1e-20, "c": 1.0}, "below the smallest normal float32"),
    ],
)
def test_combined_weight_out_of_float32_range_fails_at_its_record(
    tmp_path: Path, combine: str, features: dict[str, float], fragment: str
) -> None:
    weights = load_feature_weights(write_json(tmp_path / "w.json", {"features": features, "combine": combine}))
    lines = [json.dumps(rental(0, [["a"], ["c"]])), json.dumps(rental(1, [["a", "c"], ["a", "b"]]))]
    path = write_lines(tmp_path / "train.jsonl", lines)
    with pytest.raises(DataError) as err:
        load_triplets(path, weights)
    assert (err.value.path, err.value.line, err.value.field) == (path, 2, "neg_features[1]")
    assert fragment in err.value.message and f"({combine} of a, b)" in err.value.message


# ------------------------------------------------------------------------------------------------------ prepare_data


def write_rentals(path: Path, count: int) -> Path:
    records = [rental(i, [["location"], ["location", "price"], []]) for i in range(count)]
    return write_lines(path, [json.dumps(record) for record in records])


def test_prepare_data_weights_the_training_file(tmp_path: Path) -> None:
    train_file = write_rentals(tmp_path / "rentals.jsonl", 20)
    weights_file = write_json(tmp_path / "weights.json", {"features": FEATURES, "default": 0.5, "combine": "sum"})

    prepared = prepare_data(DataConfig(train_file=str(train_file), feature_weights=str(weights_file)))

    assert prepared.train_examples and len(prepared.train_examples) == prepared.counts["train_examples"]
    assert all(example.neg_weights == (2.5, 4.5, 0.5) for example in prepared.train_examples)
    assert prepared.files == [train_file, weights_file]


def test_prepare_data_with_folder_and_weighted_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(0, 10), "test": range(10, 14)})
    train_file = write_rentals(tmp_path / "rentals.jsonl", 10)
    weights_file = write(tmp_path / "weights.yaml", "features:\n  location: 2.5\n  price: 2.0\n")

    prepared = prepare_data(
        DataConfig(path=str(folder), train_file=str(train_file), feature_weights=str(weights_file))
    )

    assert all(example.neg_weights == (2.5, 2.5, 1.0) for example in prepared.train_examples)
    assert prepared.files[-2:] == [train_file, weights_file]


def test_prepare_data_feature_weights_without_train_file(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "beir", {"train": range(0, 10), "test": range(10, 14)})
    weights_file = write_json(tmp_path / "weights.json", {"features": FEATURES})
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(path=str(folder), feature_weights=str(weights_file)))
    assert err.value.path == weights_file and (err.value.line, err.value.field) == (None, None)
    assert "only applies to data.train_file records" in err.value.message


def test_prepare_data_reads_the_weights_before_the_training_file(tmp_path: Path) -> None:
    weights_file = write_json(tmp_path / "weights.json", {"features": {"price": -1}})
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(train_file=str(tmp_path / "missing.jsonl"), feature_weights=str(weights_file)))
    assert (err.value.path, err.value.field) == (weights_file, "features.price")


def test_prepare_data_neg_features_without_weights_config(tmp_path: Path) -> None:
    train_file = write_rentals(tmp_path / "rentals.jsonl", 20)
    with pytest.raises(DataError) as err:
        prepare_data(DataConfig(train_file=str(train_file)))
    assert (err.value.path, err.value.line, err.value.field) == (train_file, 1, "neg_features")
    assert "data.feature_weights" in err.value.message
