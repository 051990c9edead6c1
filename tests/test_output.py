"""Transcript files: atomic, never replacing by surprise, with the user's permissions."""

import json
import os

import pytest

from whisperfast import output
from whisperfast.errors import WhisperfastError
from whisperfast.pipeline import Timings, Transcript


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
@pytest.mark.parametrize("overwrite", [False, True])
def test_written_files_get_0666_less_the_umask(tmp_path, umask, mask, overwrite):
    umask(mask)
    p = tmp_path / "t.txt"
    output.write_atomic(p, "hello\n", overwrite=overwrite)
    assert p.read_text() == "hello\n"
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask
    assert os.listdir(tmp_path) == ["t.txt"]


def test_without_overwrite_an_existing_file_is_kept(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("theirs")
    with pytest.raises(FileExistsError) as e:
        output.write_atomic(p, "ours", overwrite=False)
    assert e.value.filename == str(p)
    assert p.read_text() == "theirs" and os.listdir(tmp_path) == ["t.txt"]
    output.write_atomic(p, "ours", overwrite=True)
    assert p.read_text() == "ours" and os.listdir(tmp_path) == ["t.txt"]


def _transcript(text="hello"):
    timings = Timings(**{f: 0 for f in Timings.__dataclass_fields__})
    return Transcript(text=text, language="en", segments=[], model="m", device="cpu", dtype="float32",
                      timings=timings, duration=1.0)


def test_plan_refuses_collisions_through_any_spelling_of_a_path(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with pytest.raises(WhisperfastError, match="would both write"):
        output.plan_outputs([tmp_path / "a/x.wav", tmp_path / "real/x.mp3"], ("txt",), tmp_path / "out", False)
    with pytest.raises(WhisperfastError, match="is given twice"):
        output.plan_outputs([tmp_path / "real/x.wav", tmp_path / "link/x.wav"], ("json",), None, False)
    with pytest.raises(WhisperfastError, match="is also an input"):
        output.plan_outputs([tmp_path / "a/notes.txt"], ("txt",), None, True)
    # stdout only: the same file twice is two transcripts and nothing collides
    assert output.plan_outputs([tmp_path / "a/x.wav"] * 2, (), None, False).paths == [[], []]


def test_a_run_never_replaces_a_file_it_wrote_even_with_overwrite(tmp_path):
    """Two output names that are one file (here a hard link; on a case-insensitive file system
    X.txt and x.txt): the second write is refused, whatever --overwrite says."""
    plan = output.plan_outputs([tmp_path / "in1/x.wav", tmp_path / "in2/y.wav"], ("json",), tmp_path / "out", True)
    plan.write(0, _transcript("first"))
    os.link(tmp_path / "out/x.json", tmp_path / "out/y.json")
    with pytest.raises(WhisperfastError, match="already written by this run"):
        plan.write(1, _transcript("second"))
    assert json.loads((tmp_path / "out/x.json").read_text())["text"] == "first"


def test_without_hard_links_the_exclusive_create_still_never_replaces(tmp_path, monkeypatch):
    """Some file systems refuse hard links (EPERM): the write falls back to O_EXCL."""
    import errno

    def no_links(*_):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(output.os, "link", no_links)
    p = tmp_path / "x.txt"
    output.write_atomic(p, "first", overwrite=False)
    assert p.read_text() == "first" and [q.name for q in tmp_path.iterdir()] == ["x.txt"]  # no temp file left
    with pytest.raises(FileExistsError):
        output.write_atomic(p, "second", overwrite=False)
    assert p.read_text() == "first"
