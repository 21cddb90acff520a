"""Variants: a run's named sets of package requirements, each installed once into a virtual environment of its own.

    --variant B=uvicorn==0.53.0              a version from the registry
    --variant B=/lab/code/uvicorn            a checkout or a wheel in a folder the target side can read
    --variant B="git+https://…/uvicorn@main" a VCS URL, where the registry allows it
    --variant A= --variant B=uvicorn==0.53.0 A is the image's own environment (no requirements)

A variant's environment is a venv made without pip whose site-packages hold only what its requirements install; a
.pth file adds the image's own site-packages after them, so everything else is the image's, at its pinned versions,
and only the packages the variant names (and what they need that the image lacks or pins differently) differ. The
image's pip installs into it (`pip --python`): the named packages always, even at the image's own version, so that
an A/A run's two sides are two installs. Each environment is kept under the variant cache (LAB_VARIANTS; in
compose the `variants` volume, so a later run finds it) in a folder named by the variant and a digest of what went in:
the interpreter, the image's site-packages, the requirements and, for a local checkout, its commit and the digest of
its uncommitted changes (for a folder without git, its files' sizes and times). A second run with the same inputs
reuses it; a changed checkout gets a new one. The variant's name is in that digest too, so an A/A run (one
requirement twice) installs it twice, separately, as its two sides must be.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from core.errors import UsageError
from core.host import atomic_write
from core.model import Record
from servers.matrix import VARIANT_NAME

RECORD = "lab-environment.json"
INSTALL_TIMEOUT = 900.0


class VariantError(UsageError):
    """A variant that cannot be installed: an unknown package or version, a checkout that is not there."""


class Variant(Record):
    """A name and the requirements pip installs for it; no requirements: the image's own environment."""

    name: str
    requirements: list[str]

    @classmethod
    def parse(cls, text: str) -> Variant:
        """NAME=REQ[,REQ…] (spaces separate requirements too), e.g. B=uvicorn==0.53.0."""
        name, equals, rest = text.partition("=")
        name = name.strip()
        if not equals or not VARIANT_NAME.fullmatch(name) or rest.startswith("="):  # uvicorn==0.53.0: no name
            raise UsageError(
                f"--variant {text!r}: give NAME=REQUIREMENTS, e.g. B=uvicorn==0.53.0 (NAME: letters, digits, '.', '_', "
                "'-'; empty requirements: the image's own environment)"
            )
        return cls(name=name, requirements=[r for r in re.split(r"[,\s]+", rest.strip()) if r])

    @property
    def text(self) -> str:
        return f"{self.name}={','.join(self.requirements)}"

    def projects(self) -> set[str]:
        """The distributions its requirements name (normalized), where a requirement says: `uvicorn==0.53.0`,
        `uvicorn @ git+…`, a wheel's file name, a checkout's pyproject.toml; a bare URL names none."""
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name

        found = set()
        for text in self.requirements:
            path = Path(text)
            if text.endswith(".whl"):
                found.add(canonicalize_name(path.name.split("-")[0]))
            elif path.is_dir() and (path / "pyproject.toml").is_file():
                import tomllib

                name = tomllib.loads((path / "pyproject.toml").read_text()).get("project", {}).get("name")
                if name:
                    found.add(canonicalize_name(name))
            elif "/" not in text.split("@")[0]:
                with contextlib.suppress(InvalidRequirement):
                    found.add(canonicalize_name(Requirement(text).name))
        return found


class Source(Record):
    """A local checkout or file among a variant's requirements, as it was installed."""

    path: str
    commit: str | None  # git's HEAD; None outside a git work tree
    dirty: bool | None  # uncommitted changes at install time; None outside a git work tree
    digest: str  # of its state (commit and changes, or the files' sizes and times): what the cache is keyed on


class Environment(Record):
    """A variant as installed: where its interpreter is and what it holds beyond the image's packages."""

    variant: str
    requirements: list[str]
    python: str  # the interpreter its cells' servers run
    own: dict[str, str]  # distribution -> version installed into it (`pip freeze --path`), overriding the image's
    sources: list[Source]
    folder: str | None  # the cached environment; None for the image's own
    cached: bool  # found in the cache, not installed by this run
    install_seconds: float


def image_python() -> str:
    return sys.executable


def default_cache() -> Path:
    from core.settings import settings

    given = settings().variants_dir
    return given if given is not None else Path.home() / ".cache" / "asgi-bench-lab" / "variants"


def source_of(text: str) -> Source | None:
    """The requirement's local checkout or file, when it names one; a VariantError when it looks like a path that is
    not there."""
    path = Path(text)
    if not (text.startswith(("/", "./", "../", "~")) or path.exists()):
        return None
    path = path.expanduser().resolve()
    if not path.exists():
        raise VariantError(f"the variant's checkout {text} does not exist on the target side; mount it (CODE=…)")
    commit = dirty = None
    if path.is_dir() and shutil.which("git"):
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True)
        if head.returncode == 0:
            commit = head.stdout.strip()
            changes = subprocess.run(
                ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=all"], capture_output=True
            ).stdout
            diff = subprocess.run(["git", "-C", str(path), "diff", "HEAD"], capture_output=True).stdout
            dirty = bool(changes.strip())
            return Source(
                path=str(path), commit=commit, dirty=dirty,
                digest=hashlib.sha256(commit.encode() + changes + diff).hexdigest(),
            )  # fmt: skip
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and ".git" not in p.parts)
    state = "\n".join(f"{p.relative_to(path.parent)} {p.stat().st_size} {p.stat().st_mtime_ns}" for p in files)
    return Source(path=str(path), commit=commit, dirty=dirty, digest=hashlib.sha256(state.encode()).hexdigest())


def image_paths() -> list[str]:
    """The image's own site-packages, which a variant's environment sees after its own."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def cache_key(variant: Variant, sources: list[Source]) -> str:
    inputs = {
        "scheme": 2,  # how an environment is installed (environment()): a change makes new ones
        "variant": variant.name,
        "requirements": variant.requirements,
        "python": sys.version,
        "image": image_paths(),
        "sources": [s.digest for s in sources],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def pip(python: str, *args: str, timeout: float = INSTALL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    command = [image_python(), "-m", "pip", "--python", python, "--disable-pip-version-check", "--no-input", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def pip_error(output: str) -> str:
    """pip's own reason, in one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    said = (errors[0] if errors else lines[-1] if lines else "pip failed").removeprefix("ERROR: ")
    return re.sub(r" \(from versions: [^)]*\)", "", said)[:300]


def installed(python: str, site: Path) -> dict[str, str]:
    """Distribution -> version installed into the environment's own site-packages. pip freeze says `name @ file://…`
    for a checkout or wheel; the version from the distribution's metadata says what it is, its source says where
    from."""
    frozen = pip(python, "freeze", "--path", str(site), timeout=120).stdout
    versions = {d.metadata["Name"]: d.version for d in importlib.metadata.distributions(path=[str(site)])}
    own = {}
    for line in frozen.splitlines():
        name = re.split(r"==| @ ", line, maxsplit=1)[0].strip()
        if name and not name.startswith("#"):
            own[name] = next((v for n, v in versions.items() if n.lower() == name.lower()), line.partition("==")[2])
    return own


def check(variants: list[Variant]) -> None:
    """Resolve each variant's requirements without installing anything (`pip install --dry-run`): an unknown package
    or version, or a checkout that is not there, is refused here in one line, before anything starts."""
    for variant in variants:
        for text in variant.requirements:
            source_of(text)
        if variant.requirements:
            done = pip(image_python(), "install", "--dry-run", "--quiet", "--ignore-installed", "--no-deps",
                       *variant.requirements, timeout=300)  # fmt: skip
            if done.returncode != 0:
                raise VariantError(f"variant {variant.name}: {pip_error(done.stdout + done.stderr)}")


def prepare(variants: list[Variant], cache: Path | None = None) -> list[Environment]:
    """Each variant's environment, from the cache or installed now (then kept there); a VariantError (one line) when
    pip cannot install it."""
    return [environment(v, cache or default_cache()) for v in variants]


def copied(requirements: list[str], building: Path) -> list[str]:
    """The requirements with each local checkout copied into the environment's folder first: pip builds a project in
    its own tree, and the user's checkout is mounted read-only (and must stay as it is)."""
    out = []
    for n, text in enumerate(requirements):
        source = source_of(text)
        if source is not None and Path(source.path).is_dir():
            copy = building / "sources" / f"{n}-{Path(source.path).name}"
            shutil.copytree(source.path, copy, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.egg-info"))
            out.append(str(copy))
        else:
            out.append(text)
    return out


def environment(variant: Variant, cache: Path) -> Environment:
    started = time.monotonic()
    if not variant.requirements:
        return Environment(
            variant=variant.name, requirements=[], python=image_python(), own={}, sources=[], folder=None,
            cached=True, install_seconds=0.0,
        )  # fmt: skip
    sources = [s for s in (source_of(r) for r in variant.requirements) if s is not None]
    folder = cache / f"{variant.name}-{cache_key(variant, sources)}"
    record = folder / RECORD
    if record.is_file():
        found = Environment.model_validate_json(record.read_text())
        if Path(found.python).exists():
            return found.model_copy(update={"cached": True, "install_seconds": round(time.monotonic() - started, 2)})
    cache.mkdir(parents=True, exist_ok=True)
    building = cache / f".{folder.name}.{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    try:
        # Made at its final path's name only when complete: a run stopped mid-install leaves no half environment.
        subprocess.run([image_python(), "-m", "venv", "--without-pip", str(building)], check=True, capture_output=True)
        site = next(building.glob("lib/python*/site-packages"))
        # A site directory after the variant's own (its .pth files run too: editable installs, say).
        lines = [f"import site; site.addsitedir({path!r})" for path in image_paths()]
        (site / "_lab_image.pth").write_text("\n".join(lines) + "\n")
        # The named packages always into the environment, even at the image's own version (an A/A's two sides are
        # two installs); then what they need, from the image where its version fits.
        wanted = copied(variant.requirements, building)
        python = str(building / "bin" / "python")
        for extra in (["--no-deps", "--ignore-installed"], []):
            done = pip(python, "install", "--quiet", *extra, *wanted)
            if done.returncode != 0:
                raise VariantError(f"variant {variant.name}: {pip_error(done.stdout + done.stderr)}")
        if folder.exists():
            shutil.rmtree(folder)
        building.rename(folder)  # the lab runs `python -m …` only, so no script's shebang needs the old path
        site = folder / site.relative_to(building)
        python = str(folder / "bin" / "python")
        found = Environment(
            variant=variant.name, requirements=list(variant.requirements), python=python,
            own=installed(python, site), sources=sources, folder=str(folder), cached=False,
            install_seconds=round(time.monotonic() - started, 2),
        )  # fmt: skip
        atomic_write(record, found.model_dump_json(indent=1) + "\n")
        return found
    except subprocess.TimeoutExpired:
        raise VariantError(f"variant {variant.name}: pip did not finish within {INSTALL_TIMEOUT:g} s") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
