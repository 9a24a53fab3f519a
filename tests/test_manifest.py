import pytest

from mlr_core.data.manifest import DatasetError, read_manifest
from mlr_core.metrics import IGNORE


def make(tmp_path, rows, header="image,split,labels", suffix=".csv"):
    (tmp_path / "classes.txt").write_text("cat\ndog\nhot dog\n")
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"x")
    m = tmp_path / f"manifest{suffix}"
    m.write_text("\n".join(([header] if header else []) + rows) + "\n")
    return m, tmp_path / "classes.txt"


def test_csv_and_jsonl(tmp_path):
    m, c = make(tmp_path, ["a.png,trainval,cat;hot dog", "b.png,test,?dog"])
    d = read_manifest(m, c)
    assert d.targets.tolist() == [[1, 0, 1], [0, IGNORE, 0]]
    assert d.subset("test").image_ids == ["b.png"]
    m, c = make(tmp_path, ['{"image": "a.png", "split": "test", "labels": ["dog"]}'], header=None, suffix=".jsonl")
    assert read_manifest(m, c).targets.tolist() == [[0, 1, 0]]


def test_partial_labels(tmp_path):
    m, c = make(tmp_path, ["a.png,trainval,cat;-dog;?*", "b.png,trainval,?cat;-hot dog"])
    assert read_manifest(m, c).targets.tolist() == [[1, 0, IGNORE], [IGNORE, 0, 0]]


@pytest.mark.parametrize("row, needle", [
    ("a.png,test,cat;unicorn", "manifest.csv:2: unknown class 'unicorn'"),
    ("a.png,val,cat", "manifest.csv:2: field 'split' is 'val'"),
    ("missing.png,test,cat", "manifest.csv:2: image file not found"),
    ("../../etc/passwd,test,cat", "manifest.csv:2: field 'image' is '../../etc/passwd', which leaves the dataset"),
    ("sub/../../a.png,test,cat", "manifest.csv:2: field 'image' is 'sub/../../a.png', which leaves the dataset"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, needle):
    m, c = make(tmp_path, [row])
    with pytest.raises(DatasetError, match=needle.replace("(", r"\(")):
        read_manifest(m, c)


def test_bad_header(tmp_path):
    m, c = make(tmp_path, ["a.png,test"], header="image,split")
    with pytest.raises(DatasetError, match="missing \\['labels'\\]"):
        read_manifest(m, c)


def test_paths_inside_the_folder_or_absolute_are_read(tmp_path):
    (tmp_path / "sub").mkdir()
    m, c = make(tmp_path / "sub", ["./a.png,test,cat", f"{tmp_path / 'sub' / 'b.png'},test,dog"])
    assert [p.name for p in read_manifest(m, c).paths] == ["a.png", "b.png"]
