import pytest

from embedtune.io import atomic_file, write_lines_atomic


def test_an_error_inside_the_block_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(target, binary=True) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_a_finished_block_replaces_the_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_lines_atomic(target, ["é\n", "b\n"])
    assert target.read_bytes() == "é\nb\n".encode()
    with atomic_file(target, binary=True, suffix=".part") as handle:
        handle.write(b"new")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
