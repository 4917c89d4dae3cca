import numpy as np
import pandas as pd
import pytest
import torch

from minibatch_core import MinibatchError, load_dataset


@pytest.mark.parametrize(
    "name, shape, n_classes",
    [("wine", (178, 13), 3), ("iris", (150, 4), 3), ("breast_cancer", (569, 30), 2), ("digits", (1797, 64), 10)],
)
def test_bundled_datasets_load_with_the_right_shapes(name, shape, n_classes):
    ds = load_dataset(name)
    assert tuple(ds.X.shape) == shape and ds.X.dtype == torch.float32
    assert tuple(ds.y.shape) == (shape[0],) and ds.y.dtype == torch.long
    assert ds.n_classes == n_classes
    assert set(ds.y.tolist()) == set(range(n_classes))


def test_wine_is_loaded_as_the_lesson_loads_it():
    from sklearn.datasets import load_wine

    wine = load_wine()
    ds = load_dataset("wine")
    assert torch.equal(ds.X, torch.tensor(wine.data, dtype=torch.float32))  # unscaled float32
    assert torch.equal(ds.y, torch.tensor(wine.target, dtype=torch.long))


def test_standard_scaling_is_opt_in():
    ds = load_dataset("wine", scale="standard")
    assert ds.X.mean(0).abs().max() < 1e-5
    assert (ds.X.std(0, unbiased=False) - 1).abs().max() < 1e-4
    assert load_dataset("wine").X.mean(0).abs().max() > 1  # default: as written in the lesson


def test_synthetic_is_seeded_and_sized():
    a = load_dataset("synthetic", n_samples=500, n_features=12, n_classes=4, data_seed=3)
    b = load_dataset("synthetic", n_samples=500, n_features=12, n_classes=4, data_seed=3)
    c = load_dataset("synthetic", n_samples=500, n_features=12, n_classes=4, data_seed=4)
    assert tuple(a.X.shape) == (500, 12) and a.n_classes == 4
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    assert not torch.equal(a.X, c.X)
    big = load_dataset("synthetic", n_samples=2000, n_features=64, n_classes=10)
    assert tuple(big.X.shape) == (2000, 64) and big.n_classes == 10


def test_csv_with_text_labels_is_label_encoded(tmp_path):
    path = tmp_path / "flowers.csv"
    pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0, 1, 0, 1], "kind": ["x", "y", "x", "z"]}).to_csv(path, index=False)
    ds = load_dataset(str(path), target="kind")
    assert tuple(ds.X.shape) == (4, 2) and ds.n_classes == 3
    assert ds.y.tolist() == [0, 1, 0, 2]
    assert ds.class_names == ("x", "y", "z")


def test_parquet_with_numeric_labels_is_encoded_to_0_k(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"f": np.arange(6, dtype=float), "label": [5, 9, 5, 9, 7, 7]}).to_parquet(path)
    ds = load_dataset(str(path), target="label")
    assert ds.y.tolist() == [0, 2, 0, 2, 1, 1] and ds.n_classes == 3


@pytest.mark.parametrize(
    "frame, target, message",
    [
        (pd.DataFrame({"a": ["u", "v"], "t": [0, 1]}), "t", "non-numeric feature columns: a"),
        (pd.DataFrame({"a": [1.0, None], "t": [0, 1]}), "t", "missing values in: a (1)"),
        (pd.DataFrame({"a": [1.0, 2.0], "t": [0, 1]}), "label", "target column 'label' is not in"),
        (pd.DataFrame({"a": [1.0, 2.0], "t": [1, 1]}), "t", "at least 2 are needed"),
        (pd.DataFrame({"a": [], "t": []}), "t", "is empty"),
    ],
)
def test_broken_files_get_one_line_errors(tmp_path, frame, target, message):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(MinibatchError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_dataset(str(path), target=target)
    assert "\n" not in str(info.value)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(MinibatchError, match="is empty"):
        load_dataset(str(empty), target="t")
    with pytest.raises(MinibatchError, match="does not exist"):
        load_dataset(str(tmp_path / "nope.csv"), target="t")
    with pytest.raises(MinibatchError, match="needs --target"):
        load_dataset(str(empty))


def test_unknown_dataset_names_what_is_accepted():
    with pytest.raises(MinibatchError, match="unknown dataset 'mnist'.*wine, iris"):
        load_dataset("mnist")


def test_wine_class_names_say_which_label_became_which_number():
    assert load_dataset("wine").class_names == ("class_0", "class_1", "class_2")


def test_pandas_default_index_column_is_dropped_with_a_note(tmp_path):
    path = tmp_path / "with_index.csv"
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [4.0, 3.0, 2.0, 1.0], "kind": ["x", "y", "x", "y"]})
    frame.to_csv(path)  # pandas' default: the row index is written as an unnamed first column
    ds = load_dataset(str(path), target="kind")
    assert ds.feature_names == ("a", "b") and tuple(ds.X.shape) == (4, 2)
    assert torch.equal(ds.X, torch.tensor(frame[["a", "b"]].to_numpy(), dtype=torch.float32))
    assert len(ds.notes) == 1 and "dropped its first column" in ds.notes[0] and "0..3" in ds.notes[0]
    assert "\n" not in ds.notes[0]
    clean = tmp_path / "clean.csv"
    frame.to_csv(clean, index=False)
    assert load_dataset(str(clean), target="kind").notes == ()


def test_an_unnamed_first_column_that_is_not_0_to_n_is_kept(tmp_path):
    path = tmp_path / "unnamed.csv"
    path.write_text(",a,kind\n5,1.0,x\n7,2.0,y\n9,3.0,x\n")
    ds = load_dataset(str(path), target="kind")
    assert ds.feature_names == ("Unnamed: 0", "a") and ds.notes == ()
    assert ds.X[:, 0].tolist() == [5.0, 7.0, 9.0]


def test_duplicate_column_names_are_refused_not_renamed(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("a,b,a,kind\n1,2,3,x\n4,5,6,y\n")
    with pytest.raises(MinibatchError, match="duplicate column names: a") as info:
        load_dataset(str(path), target="kind")
    assert "\n" not in str(info.value)
    # a column really named "a.1" is not a duplicate
    ok = tmp_path / "ok.csv"
    ok.write_text("a,a.1,kind\n1,2,x\n4,5,y\n")
    assert load_dataset(str(ok), target="kind").feature_names == ("a", "a.1")


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_feature_values_are_refused_naming_the_columns(tmp_path, value):
    path = tmp_path / "inf.csv"
    pd.DataFrame({"a": [1.0, value, value], "b": [1.0, 2.0, 3.0], "c": [value, 0.0, 1.0],
                  "t": [0, 1, 0]}).to_csv(path, index=False)
    with pytest.raises(MinibatchError, match=r"infinite values \(inf/-inf\) in: a \(2\), c \(1\)$") as info:
        load_dataset(str(path), target="t")
    assert "\n" not in str(info.value)


def test_checking_a_file_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "d.csv"
    pd.DataFrame({"a": [1.0, 2.0], "t": ["x", "y"]}).to_csv(path, index=False)
    code = ("import sys; from minibatch_core.input.datafile import read_table; "
            f"t = read_table({str(path)!r}, 't'); print(t.class_names, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "('x', 'y') False"


def test_a_table_loads_without_torch_and_becomes_the_lessons_tensors():
    """`train` loads its data in the command's process, which never imports torch; the worker turns it
    into exactly the tensors the lesson makes."""
    import subprocess
    import sys

    from sklearn.datasets import load_wine

    from minibatch_core.input.data import load_table, to_dataset

    code = ("import sys; from minibatch_core.input.data import load_table; "
            "t = load_table('wine', scale='standard'); print(t.features.shape, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(178, 13) False"
    wine = load_wine()
    ds = to_dataset(load_table("wine"))
    assert torch.equal(ds.X, torch.tensor(wine.data, dtype=torch.float32))
    assert torch.equal(ds.y, torch.tensor(wine.target, dtype=torch.long))
    # scaled: the float32 values the model would see, standardized per feature, rounded to float32 again
    x32 = wine.data.astype(np.float32).astype(np.float64)
    expected = (x32 - x32.mean(0)) / x32.std(0)
    scaled = to_dataset(load_table("wine", scale="standard")).X
    assert torch.allclose(scaled, torch.tensor(expected, dtype=torch.float32), atol=1e-6)
    assert torch.equal(scaled, load_dataset("wine", scale="standard").X)


def test_a_users_function_has_no_table():
    from minibatch_core.input.config import RunConfig
    from minibatch_core.input.data import table_for

    assert table_for(RunConfig(dataset="mine.py:data")) is None
    assert table_for(RunConfig()).features.shape == (178, 13)
