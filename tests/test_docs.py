"""Docs are code: every fenced ``python`` and ``bash`` block of README.md and docs/*.md runs.

Each page runs as its reader would follow it: its blocks in document order, in one fresh
temporary folder, on the CPU, never reaching the network (the Hugging Face cache is empty and
offline, torchvision's download folder empty). Every python block runs by itself, in a fresh
interpreter, so that a reader can copy any one of them: it imports what it uses. A block that
goes on from an earlier one says so in a ``continues`` marker and runs in that block's
interpreter, after it. Bash blocks run with ``bash -euo pipefail`` in the same folder, so files
one block writes (a python block's too) are there for the next. The folder starts with
real photos under the names the docs use (``photo.jpg``, ``holiday/``, ``photos/``), the
repository's ``configs/`` (the reader works in a clone) and, for the pages that need them, the
files made by ``PAGE_FILES`` (``my_photos/`` for finetune.md, a checkpoint for predict.md...).

Markers, in an HTML comment on the line(s) right above a block, are visible to anyone reading
the Markdown source:

* ``<!-- skip-test: why -->``: the block is not run. The reason is required and says what the
  test machine lacks (a GPU, a paper dataset, the network) or why running it makes no sense
  (the README's own install commands).
* ``<!-- test-replace: OLD => NEW -->``: run the block with OLD replaced by NEW (small settings
  for the CPU, e.g. ``resnet101 => resnet18``); several may stand above one block; OLD must
  occur in the block. ``{repo}`` in NEW is this repository's folder (a reader's clone).
* ``<!-- continues: TEXT -->``: this python block goes on from the nearest earlier python block
  whose code holds TEXT (a line of it, e.g. ``model = mdan_webemo()``), with the names that
  block (and what it continued) defined; without the marker a block starts from nothing.
* ``<!-- test-output -->`` above a fenced block that follows a code block: the output the code
  prints (stdout), compared line by line; a line ``...`` matches any number of lines and
  ``...`` inside a line matches any text. Trailing spaces are ignored.

Run one page: ``python -m pytest -q tests/test_docs.py -k finetune``.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _photos import feat_photo, foolbox_photo, package_data

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = ("python", "bash")
BLOCK_TIMEOUT = 300  # seconds for one block
_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_COMMENT = re.compile(r"^<!--.*-->$")  # other comments (README's test-command) are transparent
_MARK = re.compile(r"^<!--\s*(skip-test|test-replace|test-output|continues)\s*:?\s*(.*?)\s*-->$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None = None
    replace: list[tuple[str, str]] = field(default_factory=list)
    expected: str | None = None  # the test-output block that follows
    continues: str | None = None  # text of the earlier python block this one goes on from

    @property
    def where(self) -> str:
        try:
            return f"{self.page.relative_to(ROOT)}:{self.line}"
        except ValueError:
            return f"{self.page.name}:{self.line}"

    def source(self) -> str:
        code = self.code
        for old, new in self.replace:
            if old not in code:
                raise AssertionError(f"{self.where}: test-replace {old!r} not found in the block")
            code = code.replace(old, new.replace("{repo}", str(ROOT)))
        return code


def parse(page: Path) -> list[Block]:
    """The page's runnable fenced blocks (indented ones too) with their markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    marks: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        m = _MARK.match(lines[i].strip())
        if m:
            marks.append((m.group(1), m.group(2)))
            i += 1
            continue
        fence = _FENCE.match(lines[i])
        if not fence:
            if lines[i].strip() and not _COMMENT.match(lines[i].strip()):
                marks = []  # a marker belongs to the block right below it
            i += 1
            continue
        start, indent = i, len(fence.group(1))
        i += 1
        body = []
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            line = lines[i]
            body.append(line[indent:] if not line[:indent].strip() else line.lstrip())
            i += 1
        if i == len(lines):
            raise AssertionError(f"{page.name}:{start + 1}: the fence is never closed")
        i += 1  # the closing fence
        block = Block(page, start + 1, fence.group(2), "\n".join(body) + "\n")
        for kind, arg in marks:
            if kind == "skip-test":
                if not arg:
                    raise AssertionError(f"{block.where}: skip-test needs a reason")
                block.skip = arg
            elif kind == "test-replace":
                old, sep, new = arg.partition("=>")
                if not sep or not old.strip():
                    raise AssertionError(f"{block.where}: write test-replace: OLD => NEW")
                block.replace.append((old.strip(), new.strip()))
            elif kind == "continues":
                if not arg:
                    raise AssertionError(f"{block.where}: continues needs the text of a block")
                block.continues = arg
            elif kind == "test-output":
                if not blocks or blocks[-1].lang not in RUNNABLE:
                    raise AssertionError(f"{block.where}: test-output follows no code block")
                blocks[-1].expected = block.code
        marks = []
        blocks.append(block)
    return [b for b in blocks if b.lang in RUNNABLE]


def _matches(expected: str, actual: str) -> bool:
    """``expected`` with ``...`` wildcards (whole lines: any lines; in a line: any text; in
    ``0....`` the last three dots are the wildcard: ``0.`` then anything).

    Runs of spaces count as one (columns aligned for another value still match)."""
    parts = []
    for line in expected.rstrip().splitlines():
        if line.strip() == "...":
            parts.append(r"(?:.*\n)*?")
        else:
            pieces = [re.escape(p) for p in re.split(r"\.\.\.(?!\.)", _squeeze(line.rstrip()))]
            parts.append(".*".join(pieces) + r"\n")
    pattern = "".join(parts)
    text = "\n".join(_squeeze(x.rstrip()) for x in actual.rstrip().splitlines()) + "\n"
    return re.fullmatch(pattern, text) is not None


def _squeeze(line: str) -> str:
    return re.sub(r"(?<=\S) {2,}", " ", line)  # keeps the indentation


# ------------------------------------------------------------------ the reader's folder
def _workdir(tmp: Path) -> Path:
    """A folder with the real photos the docs refer to."""
    (tmp / "holiday").mkdir()
    (tmp / "photos").mkdir()
    shutil.copy(feat_photo("free-mountain-vector-01.jpg"), tmp / "photo.jpg")
    for i, name in enumerate(("single_face.jpg", "multi_face.jpg")):
        shutil.copy(feat_photo(name), tmp / "holiday" / f"{i}.jpg")
    for i, name in enumerate(("imagenet_00_243.jpg", "imagenet_01_559.jpg")):
        shutil.copy(foolbox_photo(name), tmp / "photos" / f"{i}.jpg")
    if (ROOT / "configs").is_dir():
        shutil.copytree(ROOT / "configs", tmp / "configs")  # the reader works in a clone
    return tmp


def _my_photos(tmp: Path) -> None:
    """finetune.md's ``my_photos/``: 5 real photos (foolbox's ImageNet and CIFAR-10 samples) for
    each fine label of its taxonomy, laid out as the page shows (``irritated/`` an alias,
    ``negative/fear/horror/`` under coarse folders); and a
    torchvision ResNet-18 state-dict file standing in for the downloaded ImageNet weights."""
    import torch
    import torchvision

    labels = ["amusement", "contentment", "affection", "rage", "irritation", "horror"]
    folder = package_data("foolbox", "data")
    files = sorted(folder.glob("imagenet_*.jpg")) + sorted(folder.glob("cifar10_*.png"))
    for k, label in enumerate(labels):
        folder_name = "irritated" if label == "irritation" else label  # an alias as a folder
        where = tmp / "my_photos" / ("negative/fear" if label == "horror" else "") / folder_name
        where.mkdir(parents=True)
        for j in range(5):
            src = files[k * 5 + j]
            shutil.copy(src, where / f"{j:04d}{src.suffix}")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp / "resnet18-weights.pth")


def _tiny_checkpoint(tmp: Path) -> None:
    """predict.md's ``path/to/checkpoint``: a small ResNet-18 model of the ``webemo`` tree at 64
    px, saved with ``save_pretrained`` (never trained: it shows the warning too)."""
    from _photos import tiny_model

    tiny_model("webemo").save_pretrained(tmp / "tiny_checkpoint")


_FI_RUN: list[Path] = []  # one tiny FI training run per test session, copied into each page


def _fi_run(tmp: Path) -> None:
    """``runs/fi``: a real (tiny) training run of the ``fi`` taxonomy -- ResNet-18, 32 px, one
    optimizer step on 5 real photos (foolbox's ImageNet and CIFAR-10 samples) per emotion --
    and ``exported/mdan_fi``, what ``mdan-zoo export`` writes from it."""
    from mdan_zoo import TrainConfig, export_run, get_taxonomy
    from mdan_zoo.training._trainer import Trainer

    if not _FI_RUN:
        cache = Path(tempfile.mkdtemp(prefix="docs-fi-run-"))
        folder = package_data("foolbox", "data")
        files = sorted(folder.glob("imagenet_*.jpg")) + sorted(folder.glob("cifar10_*.png"))
        for k, label in enumerate(get_taxonomy("fi").labels[-1]):
            (cache / "fi_photos" / label).mkdir(parents=True)
            for j in range(5):
                shutil.copy(files[k * 5 + j], cache / "fi_photos" / label / f"{j}{files[0].suffix}")
        config = TrainConfig(
            name="fi",
            taxonomy="fi",
            dataset="folder",
            data_root=str(cache / "fi_photos"),
            backbone="resnet18",
            model={"fpn_channels": 32},
            pretrained="none",
            input_size=32,
            resize_size=40,
            epochs=1,
            batch_size=8,
            max_steps_per_epoch=1,
            workers=0,
            device="cpu",
            progress=False,
            eval_test=False,
            output_dir=str(cache / "runs" / "fi"),
        )
        Trainer(config).fit()
        export_run(cache / "runs" / "fi", cache / "exported" / "mdan_fi")
        _FI_RUN.append(cache)
    shutil.copytree(_FI_RUN[0] / "runs", tmp / "runs", dirs_exist_ok=True)
    shutil.copytree(_FI_RUN[0] / "exported", tmp / "exported", dirs_exist_ok=True)


def _hub_files(tmp: Path) -> None:
    """hub.md's ``old.pth`` (a pickled state dict of ``mdan(taxonomy="fi", backbone="resnet18")``),
    ``runs/fi-half`` (a small FI model saved in half precision) and :func:`_fi_run`'s folders."""
    import torch
    from _photos import tiny_model

    from mdan_zoo import mdan

    torch.save(mdan(taxonomy="fi", backbone="resnet18").state_dict(), tmp / "old.pth")
    tiny_model("fi").half().save_pretrained(tmp / "runs" / "fi-half")
    _fi_run(tmp)


PAGE_FILES: dict[str, Callable[[Path], None]] = {
    "README.md": _fi_run,
    "finetune.md": _my_photos,
    "predict.md": _tiny_checkpoint,
    "hub.md": _hub_files,
    "zoo.md": _fi_run,
}


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    home = tmp / ".hf"
    env.update(
        HF_HOME=str(home),
        HF_HUB_CACHE=str(home / "hub"),
        HF_HUB_OFFLINE="1",
        HF_ENDPOINT="http://127.0.0.1:9",  # discard port: refused at once
        HF_HUB_DISABLE_TELEMETRY="1",
        TORCH_HOME=str(tmp / ".torch"),
        OMP_NUM_THREADS="2",
        CUDA_VISIBLE_DEVICES="",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONWARNINGS="default",
    )
    return env


# ------------------------------------------------------------------ running a page
# The interpreter that runs a page's python blocks: one JSON line per block in on stdin, one
# JSON line per block out on the protocol stream (the original stdout); whatever the blocks or
# their child processes write to the real stdout goes to stderr instead, so it cannot garble it.
_RUNNER = r"""
import contextlib, io, json, os, sys, traceback
proto = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), write_through=True)
ns = {"__name__": "__main__"}
for line in sys.stdin:
    code, where = json.loads(line)
    buf = io.StringIO()
    ok, err = True, ""
    try:
        with contextlib.redirect_stdout(buf):
            exec(compile(code, where, "exec"), ns)
    except BaseException:
        ok, err = False, traceback.format_exc()
    proto.write(json.dumps({"ok": ok, "out": buf.getvalue(), "err": err}) + "\n")
    proto.flush()
"""


class _Python:
    """One interpreter per page, fed block by block."""

    def __init__(self, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RUNNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            cwd=cwd,
            env=env,
        )

    def run(self, block: Block) -> tuple[bool, str, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([block.source(), f"<{block.where}>"]) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], BLOCK_TIMEOUT)
        if not ready:
            self.close()
            return False, "", f"timed out after {BLOCK_TIMEOUT} s"
        line = self.proc.stdout.readline()
        if not line:
            return False, "", f"the interpreter died (exit {self.proc.wait()})"
        reply = json.loads(line)
        return reply["ok"], reply["out"], reply["err"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.close()


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.is_file() else ""


def run_page(page: Path, tmp: Path) -> list[tuple[str, float]]:
    """Run every runnable, unskipped block of ``page`` in order; fail on the first that fails
    or prints something else than its test-output block. Returns (block, seconds) pairs."""
    blocks = [b for b in parse(page) if b.skip is None]
    if not blocks:
        pytest.skip(f"{page.name}: every block is marked skip-test")
    (tmp / "work").mkdir(parents=True)
    cwd = _workdir(tmp / "work")
    if page.name in PAGE_FILES:
        PAGE_FILES[page.name](cwd)
    env = _env(tmp)
    interpreters: list[_Python] = []
    owner: dict[int, _Python] = {}  # id(block) -> the interpreter it ran in
    ran: list[Block] = []
    timings = []
    start, cpu = time.perf_counter(), _children_cpu()
    try:
        for block in blocks:
            t0 = time.perf_counter()
            if block.lang == "python":
                python = _interpreter(block, ran, owner, interpreters, cwd, env, tmp)
                owner[id(block)] = python
                ran.append(block)
                ok, out, err = python.run(block)
                if not ok:
                    pytest.fail(
                        f"{block.where} failed:\n{out[-2000:]}\n{err[-3000:]}\n"
                        f"stderr:\n{_tail(python.log_path)}"
                    )
            else:
                proc = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", block.source()],
                    capture_output=True,
                    text=True,
                    cwd=cwd,
                    env=env,
                    timeout=BLOCK_TIMEOUT,
                )
                out = proc.stdout
                if proc.returncode:
                    pytest.fail(
                        f"{block.where} exited {proc.returncode}:\n{out[-3000:]}\n"
                        f"{proc.stderr[-3000:]}"
                    )
            timings.append((block.where, time.perf_counter() - t0))
            print(f"{timings[-1][1]:6.1f} s  {block.where}", flush=True)  # -s shows the times
            if block.expected is not None and not _matches(block.expected, out):
                pytest.fail(
                    f"{block.where}: the output shown in the doc is not what the code prints.\n"
                    f"doc:\n{block.expected}\nactual:\n{out}"
                )
    finally:
        for python in interpreters:
            python.close()
    print(
        f"{page.name}: {time.perf_counter() - start:.1f} s wall, "
        f"{_children_cpu() - cpu:.1f} s CPU in its processes",
        flush=True,
    )
    return timings


def _interpreter(
    block: Block,
    ran: list[Block],
    owner: dict[int, _Python],
    interpreters: list[_Python],
    cwd: Path,
    env: dict[str, str],
    tmp: Path,
) -> _Python:
    """A fresh interpreter, or, for a ``continues`` block, the one of the block it names."""
    if block.continues is None:
        python = _Python(cwd, env, tmp / f"python-{len(interpreters)}.log")
        interpreters.append(python)
        return python
    for earlier in reversed(ran):
        if block.continues in earlier.code:
            return owner[id(earlier)]
    raise AssertionError(
        f"{block.where}: continues {block.continues!r}, but no earlier python block of the page "
        "holds that text"
    )


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_doc_page_runs(page: Path, tmp_path: Path) -> None:
    run_page(page, tmp_path)


def test_every_block_is_run_or_says_why_not() -> None:
    """A skip reason is a sentence; a test-replace names text that is in its block."""
    for page in PAGES:
        for block in parse(page):
            assert block.skip is None or len(block.skip) > 10, f"{block.where}: say why"
            block.source()


def _resolves(dotted: str) -> bool:
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_dotted_names_in_the_docs_exist() -> None:
    """``mdan_zoo.module.name`` in prose points at something real (modules get renamed)."""
    wrong = [
        f"{page.name}: {m.group(0)}"
        for page in PAGES
        for m in re.finditer(r"\bmdan_zoo(?:\.[A-Za-z_]\w*)+(?![\w/])", page.read_text())
        if not _resolves(m.group(0))
    ]
    assert not wrong, f"names that do not exist: {wrong}"
    assert not _resolves("mdan_zoo.predict.iter_results")  # the check can fail


# ------------------------------------------------------------------ the checker can fail
def test_the_parser_reads_markers_fences_and_outputs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n<!-- test-replace: big => small -->\n<!-- skip-test: needs a GPU and FI -->\n"
        "```python\nx = 'big'\n```\n\n* item:\n\n  ```bash\n  echo hi\n  ```\n"
        "<!-- test-output -->\n```\nhi\n```\n\n```json\n{}\n```\n"
    )
    first, second = parse(page)
    assert first.skip == "needs a GPU and FI" and first.source() == "x = 'small'\n"
    assert second.lang == "bash" and second.code == "echo hi\n" and second.expected == "hi\n"
    assert _matches("a\nb ... c\n", "a\nb 1.5 c\n")
    assert not _matches("a\nb ... c\n", "a\nb 1.5 d\n")
    assert _matches("p 0....   q 0....\n", "p 0.599 q 0.401\n") and not _matches("0....\n", "1.5\n")
    assert _matches("x\n...\nz\n", "x\n1\n2\nz\n")
    assert not _matches("x\nz\n", "x\n1\nz\n")
    assert _matches("  a   b ...\n", "  a b  c\n") and not _matches("a b\n", "  a b\n")
    page.write_text("<!-- skip-test: -->\n```bash\nls\n```\n")
    with pytest.raises(AssertionError, match="needs a reason"):
        parse(page)
    page.write_text("<!-- test-replace: nothing => x -->\n```bash\nls\n```\n")
    with pytest.raises(AssertionError, match="not found in the block"):
        parse(page)[0].source()


def test_the_runner_catches_wrong_outputs_and_failing_blocks(tmp_path: Path) -> None:
    """Files written by one block are there for the next; a python block sees an earlier
    one's names only when it says it continues it; a wrong sample output, a raising block, a
    failing command, a name from a block not continued, and a continues marker naming no
    block each fail the page."""
    good = tmp_path / "good.md"
    good.write_text(
        "```python\nn = 2\nopen('n.txt', 'w').write(str(n))\n```\n"
        '```bash\necho "bash read $(cat n.txt)"\n```\n<!-- test-output -->\n```\nbash read ...\n```\n'
        "<!-- continues: n = 2 -->\n"
        "```python\nimport subprocess\nsubprocess.run(['echo', 'from a child'])\nprint(n * 21)\n```\n"
        "<!-- test-output -->\n```text\n42\n```\n"
    )
    (tmp_path / "a").mkdir()
    assert len(run_page(good, tmp_path / "a")) == 3
    for n, text in enumerate(
        (
            "```python\nprint('a')\n```\n<!-- test-output -->\n```\nb\n```\n",
            "<!-- test-replace: 1 => 0 -->\n```python\nx = 1 / 1\n```\n",
            "```bash\nfalse\necho not reached\n```\n",
            "```bash\necho a\n```\n<!-- test-output -->\n```\nb\n```\n",
            "```python\nn = 2\n```\n```python\nprint(n)\n```\n",  # NameError: a fresh interpreter
        )
    ):
        bad = tmp_path / f"bad{n}.md"
        bad.write_text(text)
        (tmp_path / f"w{n}").mkdir()
        with pytest.raises(pytest.fail.Exception, match="failed|exited|not what"):
            run_page(bad, tmp_path / f"w{n}")
    lost = tmp_path / "lost.md"
    lost.write_text("```python\nn = 2\n```\n<!-- continues: m = 3 -->\n```python\nprint(n)\n```\n")
    (tmp_path / "lost").mkdir()
    with pytest.raises(AssertionError, match="no earlier python block"):
        run_page(lost, tmp_path / "lost")


def test_a_page_with_every_block_skipped_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "skipped.md"
    page.write_text("<!-- skip-test: needs FI data and a GPU -->\n```bash\nmdan-zoo train x\n```\n")
    with pytest.raises(pytest.skip.Exception, match="every block is marked skip-test"):
        run_page(page, Path(tempfile.mkdtemp(dir=tmp_path)))


if (
    __name__ == "__main__"
):  # `python tests/test_docs.py`: every block and what the test does with it
    for doc in PAGES:
        for b in parse(doc):
            what = f"skip: {b.skip}" if b.skip else "run" + " + output" * (b.expected is not None)
            print(f"{b.where:28} {b.lang:7} {what}")
