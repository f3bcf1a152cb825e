"""`python -m training`, run as users run it: a subprocess on small texts written for these tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gensim.models import KeyedVectors
from river_novel import river_chapters

from models.artifacts import read_manifest

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--min-count", "2", "--dim", "16", "--w2v-epochs", "2", "--workers", "1"]
TINY_FIT = [
    "--epochs",
    "1",
    "--hidden",
    "8",
    "--seq-len",
    "8",
    "--batch-size",
    "4",
    "--time-budget-minutes",
    "0",
]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "training", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def novel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-chapter GB18030 file with CRLF line ends, shuffled from the lines above."""
    chapters = river_chapters(12, newline="\r\n")
    path = tmp_path_factory.mktemp("novel") / "测试小说.txt"  # a Chinese file name, drawn in report.png
    path.write_bytes("\r\n".join(chapters).encode("gb18030"))
    return path


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, result.stderr
    for needle in needles:
        assert needle in error_lines[0]


def test_help_lists_pipeline_and_fit_options() -> None:
    result = run("--help")
    assert result.returncode == 0
    for option in (
        "--corpus",
        "--out",
        "--max-chars",
        "--vectors-only",
        "--keep-brackets",
        "--epochs",
        "--resume",
    ):
        assert option in result.stdout


@pytest.mark.parametrize("case", ["missing", "empty", "binary", "undecodable", "empty-dir"])
def test_bad_corpus_exits_2_with_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case}.txt"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif case == "undecodable":
        path.write_bytes(b"\x80abc\xff\xfe\xfd" * 20)
    elif case == "empty-dir":
        path = tmp_path / "chapters"
        path.mkdir()
    result = run("--corpus", path, "--out", tmp_path / "out", *SMALL)
    needles = [str(path)] + (["gb18030", "big5", "utf-8"] if case == "undecodable" else [])
    _assert_one_line_error(result, *needles)
    assert not (tmp_path / "out").exists()


def test_invalid_option_values_are_one_line_errors(tmp_path: Path, novel: Path) -> None:
    _assert_one_line_error(run("--corpus", novel, "--out", tmp_path / "o", "--dim", "0"), "--dim")
    _assert_one_line_error(
        run("--corpus", novel, "--out", tmp_path / "o", "--user-dict", tmp_path / "no.txt"), "no.txt"
    )
    _assert_one_line_error(
        run("--corpus", novel, "--out", tmp_path / "o", "--vectors", tmp_path / "v.bin"), "v.bin"
    )


def test_refuses_to_replace_a_directory_that_is_not_a_model(tmp_path: Path, novel: Path) -> None:
    out = tmp_path / "photos"
    out.mkdir()
    (out / "cat.jpg").write_bytes(b"\xff\xd8")
    _assert_one_line_error(
        run("--corpus", novel, "--out", out, *SMALL, "--vectors-only"), "not a model directory"
    )
    assert (out / "cat.jpg").read_bytes() == b"\xff\xd8"


def test_vectors_only_writes_verified_vectors_and_manifest_then_hits_the_cache(
    tmp_path: Path, novel: Path
) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "model"
    first = run("--corpus", novel, "--out", out, *SMALL, "--vectors-only", "--cache-dir", cache)
    assert first.returncode == 0, first.stderr
    manifest = read_manifest(out)
    assert sorted(manifest["files"]) == ["vectors.bin"]
    corpus = manifest["corpus"]
    assert corpus["encoding"] == "gb18030" and corpus["chapters"] == 12 and corpus["name"] == "测试小说.txt"
    assert corpus["strip_brackets"] is False and corpus["tokens"] > corpus["chars"] / 3
    assert manifest["segmentation"]["mode"] == "precise" and manifest["segmentation"]["cache_hit"] is False
    assert manifest["word2vec"]["dim"] == 16 and manifest["word2vec"]["negative"] == 25
    vocabulary = manifest["vocabulary"]
    assert vocabulary["dim"] == 16 and vocabulary["min_char_count"] == 3
    assert vocabulary["held_out_chapters"] == 1 and 0 < vocabulary["split_index"] < vocabulary["tokens"]
    # Nothing is deleted: every tokenizer token is kept as a word or spelled out as model tokens.
    held = vocabulary["held_out"]
    assert held["words_kept"] + held["spelled_tokens"] == held["model_tokens"] >= held["tokenizer_tokens"]
    assert set(manifest["timings"]) >= {"corpus", "segmentation", "word2vec"}
    kv = KeyedVectors.load_word2vec_format(str(out / "vectors.bin"), binary=True)
    assert len(kv) == vocabulary["size"] and kv.vector_size == 16
    assert "encoding gb18030" in first.stdout and "12 chapters" in first.stdout

    second = run("--corpus", novel, "--out", out, *SMALL, "--vectors-only", "--cache-dir", cache)
    assert second.returncode == 0, second.stderr
    assert "(cached)" in second.stdout
    assert read_manifest(out)["segmentation"]["cache_hit"] is True
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp or checkpoint dirs


def test_downloaded_markup_is_removed_and_counted_unless_keep_markup(tmp_path: Path) -> None:
    # A saved web page of an invented novel: headings in <h3>, lines in <p>, &nbsp; and a site banner.
    chapters = [chapter.split("\n") for chapter in river_chapters(6)]
    page = "".join(
        f"<h3>{lines[0]}</h3>\n" + "".join(f"<p>&nbsp;&nbsp;{line}</p>\n" for line in lines[2:])
        for lines in chapters
    )
    path = tmp_path / "下载.txt"
    path.write_text(f"本书由河边书屋整理制作\n{page}更多精彩，尽在www.example.com\n", encoding="utf-8")
    cleaned = run(
        "--corpus", path, "--out", tmp_path / "a", *SMALL, "--vectors-only", "--cache-dir", tmp_path / "c"
    )
    assert cleaned.returncode == 0, cleaned.stderr
    removed = {"tags": 6 * 2 + 6 * 12 * 2, "site_lines": 2, "site_insertions": 0, "kept": False}
    assert read_manifest(tmp_path / "a")["corpus"]["cleaning"] == removed
    assert "cleaned     156 HTML tags, 2 download-site lines and 0 site insertions removed" in cleaned.stdout
    words = KeyedVectors.load_word2vec_format(str(tmp_path / "a" / "vectors.bin"), binary=True).index_to_key
    assert not {"h3", "nbsp", "www", "<", "p"} & set(words)

    kept = run("--corpus", path, "--out", tmp_path / "b", *SMALL, "--vectors-only", "--keep-markup")
    assert kept.returncode == 0, kept.stderr
    assert read_manifest(tmp_path / "b")["corpus"]["cleaning"]["kept"] is True
    assert "cleaned     nothing: --keep-markup" in kept.stdout
    kept_words = KeyedVectors.load_word2vec_format(
        str(tmp_path / "b" / "vectors.bin"), binary=True
    ).index_to_key
    assert {"h3", "nbsp"} <= set(kept_words)  # what the default run removed


def test_existing_vectors_and_user_dict(tmp_path: Path, novel: Path) -> None:
    first = tmp_path / "first"
    assert run("--corpus", novel, "--out", first, *SMALL, "--vectors-only").returncode == 0
    user_dict = tmp_path / "names.txt"
    user_dict.write_text("老渔夫 1000 nr\n", encoding="utf-8")
    second = tmp_path / "second"
    result = run(
        "--corpus", novel, "--out", second, "--vectors", first / "vectors.bin", "--user-dict", user_dict,
        "--vectors-only", "--cache-dir", tmp_path / "cache",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(second)
    assert manifest["word2vec"]["source"] == "file" and manifest["word2vec"]["binary"] is True
    assert manifest["segmentation"]["user_dict"] == "userdict.txt"
    assert (second / "userdict.txt").read_text(encoding="utf-8") == "老渔夫 1000 nr\n"
    assert (second / "vectors.bin").read_bytes() == (first / "vectors.bin").read_bytes()


def test_full_run_writes_network_report_and_reevaluates(tmp_path: Path, novel: Path) -> None:
    out = tmp_path / "model"
    result = run("--corpus", novel, "--out", out, *SMALL, *TINY_FIT, "--cache-dir", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    # report.png names the novel (测试小说.txt) in a CJK font: matplotlib warned of no missing glyph.
    assert "missing from font" not in result.stderr and "findfont" not in result.stderr
    manifest = read_manifest(out)
    # cache.json only when the validation tail found the cache worth a weight above zero.
    cache = ["cache.json"] if manifest["cache"]["weight"] > 0 else []
    assert sorted(manifest["files"]) == [
        *cache,
        "characters.json",
        "lstm.npz",
        "memory.json",
        "ngram.npz",
        "report.png",
        "vectors.bin",
    ]
    for section in ("network", "training", "mixture", "cache", "evaluation", "memory", "timings"):
        assert manifest[section], section
    assert (
        manifest["network"]["hidden"] == 8
        and manifest["network"]["vocab_size"] == manifest["vocabulary"]["size"]
    )
    assert manifest["training"]["held_out_tokens"] == manifest["vocabulary"]["held_out_tokens"]
    assert not (tmp_path / ".model.checkpoint").exists()  # finished runs leave no checkpoint behind
    with np.load(out / "lstm.npz", allow_pickle=False) as archive:
        assert archive.files

    again = run("evaluate", out, "--cache-dir", tmp_path / "cache", "--json")
    assert again.returncode == 0, again.stderr
    reevaluated = json.loads(again.stdout)
    # The re-evaluation reads the mixture back from ngram.npz and the cache from cache.json: the same
    # figures, to the last digit.
    keys = ["model", "lstm", "token_ngram", "unigram", "bigram", "char_5gram_kn", "ppmd", "split"]
    for key in keys + (["without_cache"] if cache else []):
        assert reevaluated[key] == manifest["evaluation"][key]
    # Scripts read the model's figure from the last line of the plain-text evaluation.
    table = run("evaluate", out, "--cache-dir", tmp_path / "cache")
    assert table.returncode == 0, table.stderr
    bpc = manifest["evaluation"]["model"]["bpc"]
    assert table.stdout.strip().splitlines()[-1] == f"held-out bits per character: {bpc:.2f}"


def test_resume_without_a_checkpoint_is_a_usage_error(tmp_path: Path, novel: Path) -> None:
    result = run("--corpus", novel, "--out", tmp_path / "m", *SMALL, *TINY_FIT, "--resume")
    _assert_one_line_error(result, "checkpoint")


def test_evaluate_errors(tmp_path: Path) -> None:
    _assert_one_line_error(run("evaluate", tmp_path / "absent"), "absent")


def test_session_fixture_model_has_every_manifest_section(tiny_model_dir: Path) -> None:
    manifest = read_manifest(tiny_model_dir)
    expected = {
        "format_version", "created_at", "library_versions", "files", "corpus", "segmentation", "word2vec",
        "vocabulary", "network", "training", "evaluation", "timings",
    }  # fmt: skip
    assert expected <= set(manifest)
    corpus = manifest["corpus"]
    assert (
        corpus["name"] == "hongloumeng" and corpus["strip_brackets"] is True and corpus["max_chars"] == 60000
    )
    assert {"sha256", "encoding", "chars", "chapters", "tokens"} <= set(corpus)
    assert {"size", "dim", "tokens", "min_count", "min_char_count"} <= set(manifest["vocabulary"])


def test_interrupted_run_resumes_with_the_same_word2vec_vectors(tmp_path: Path, novel: Path) -> None:
    import signal
    import time

    out = tmp_path / "model"
    checkpoint_dir = tmp_path / ".model.checkpoint"
    # Enough epochs that the run is still fitting when the test sees the first checkpoint (an epoch of this
    # tiny model takes ~0.1 s on a quiet machine).
    slow_fit = ["--epochs", "40", "--hidden", "48", "--seq-len", "8", "--batch-size", "2", "--patience", "40"]
    args = ["--corpus", novel, "--out", out, *SMALL, *slow_fit, "--time-budget-minutes", "0"]
    command = [sys.executable, "-m", "training", *map(str, args), "--cache-dir", str(tmp_path / "cache")]
    # Ctrl-C's default action in the child, as in a terminal: a test run started in the background by a
    # non-interactive shell inherits an ignored SIGINT, and the run would then finish instead of stopping.
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not (checkpoint_dir / "checkpoint.npz").is_file() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    assert not out.exists()
    saved_vectors = (checkpoint_dir / "vectors.bin").read_bytes()

    changed = run(*args, "--cache-dir", tmp_path / "cache", "--resume", "--dim", "8")
    _assert_one_line_error(changed, "dim=16")

    resumed = run(*args, "--cache-dir", tmp_path / "cache", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "reusing the word2vec vectors" in resumed.stderr
    assert "resuming after epoch" in resumed.stderr
    assert (out / "vectors.bin").read_bytes() == saved_vectors
    assert read_manifest(out)["word2vec"]["reused"].endswith("vectors.bin")


def test_held_out_split_is_the_last_tenth_of_chapters_or_of_tokens() -> None:
    from models.vectors import WordVectors
    from models.vocabulary import UNKNOWN_TOKEN
    from training.split import ids_and_split, token_stream

    words = ["甲", "乙", UNKNOWN_TOKEN]
    vectors = WordVectors(words, np.eye(3, dtype=np.float32))
    chapters = [["甲", "乙", "丙"] for _ in range(19)] + [["乙"] * 7]
    stream = token_stream(chapters, vectors.index)
    ids, split = ids_and_split(stream, vectors)
    assert ids.dtype == np.int32 and len(ids) == 19 * 3 + 7  # 丙 is not deleted: it becomes <unk>
    assert stream.held_chapters == 2 and split == 18 * 3  # round(0.1 * 20) chapters held out
    assert list(ids[:3]) == [0, 1, 2]
    assert token_stream(chapters[:3], vectors.index).held_chapters == 1  # at least one chapter
    stream = token_stream([["甲", "乙"] * 50], vectors.index)
    assert (ids_and_split(stream, vectors)[1], stream.held_chapters) == (90, 0)  # one chapter: last 10%


def test_keeps_a_directory_whose_only_claim_to_be_a_model_is_a_manifest_file(
    tmp_path: Path, novel: Path
) -> None:
    # A stray manifest.json used to be enough to have the whole directory deleted.
    out = tmp_path / "x"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    (out / "keep.js").write_text("k")
    _assert_one_line_error(
        run("--corpus", novel, "--out", out, *SMALL, "--vectors-only"),
        "not a model directory written by this program",
    )
    assert (out / "keep.js").read_text() == "k"


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_unwritable_output_is_one_line_before_segmentation(tmp_path: Path, novel: Path, where: str) -> None:
    # Checked first (exit 2, one line), not a traceback after segmentation and word2vec.
    if where == "under-a-file":
        (tmp_path / "file").write_text("not a directory")
        out = tmp_path / "file" / "model"
    else:
        out = Path("/proc/novel-lstm-test-model")  # not writable even for root
    result = run("--corpus", novel, "--out", out, *SMALL, "--vectors-only", "--cache-dir", tmp_path / "c")
    _assert_one_line_error(result, str(out))
    assert not (tmp_path / "c").exists(), "segmentation ran before the output was checked"
