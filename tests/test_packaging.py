"""Packaging: the source distribution carries what a build from it needs (MANIFEST.in),
and the built extension loads against the torch it was built with, or says why not.

`pip install vggkern-X.tar.gz` (or a wheel built by `python -m build`, which goes
through the sdist) compiles from the sdist alone. setup.py lists only the sources it
compiles where the sdist is made, so without MANIFEST.in the sdist had no header and,
made without nvcc, no .cu file: every build from it failed. Here the sdist is made by
setuptools' PEP 517 hook (what pip and `build` call), and checked against the source
tree and against the #includes of the C++/CUDA sources. tests/run.sh then builds the
CPU-only install from such an sdist and runs tests against it.

An extension built against another torch fails to resolve torch's C++ symbols when
loaded; `import vggkern` turns that (or a missing build) into an ImportError that names
the running torch and the rebuild, and warns where the versions differ in major.minor
but the load succeeded.
"""
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP_PARTS = {"__pycache__", "build", "dist", ".git", "device_build", "device_out", ".benchmarks"}
SKIP_SUFFIXES = (".pyc", ".so", ".o")


def source_files(top):
    """The files under ROOT/top, build outputs left out, as sdist-relative paths."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
        dirnames[:] = [d for d in dirnames if d not in SKIP_PARTS and not d.endswith(".egg-info")]
        for name in filenames:
            if not name.endswith(SKIP_SUFFIXES):
                found.add(os.path.relpath(os.path.join(dirpath, name), ROOT))
    return found


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    # Made from a copy of the tree without build outputs: setuptools also ships whatever
    # an earlier build's vggkern.egg-info/SOURCES.txt lists, which would hide a gap.
    tree = tmp_path_factory.mktemp("tree") / "src"
    shutil.copytree(ROOT, tree, ignore=lambda d, names: [
        n for n in names if n in SKIP_PARTS or n.endswith(SKIP_SUFFIXES + (".egg-info",))])
    out = tmp_path_factory.mktemp("sdist")
    env = dict(os.environ, VGGKERN_CPU_ONLY="1")  # the sdist's content must not depend on nvcc
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))",
         str(out)], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    name = proc.stdout.strip().splitlines()[-1]
    assert name.endswith(".tar.gz"), proc.stdout[-2000:]
    with tarfile.open(out / name) as tar:
        members = [m.name for m in tar.getmembers() if m.isfile()]
    prefix = name[: -len(".tar.gz")] + "/"
    assert all(m.startswith(prefix) for m in members), members[:5]
    return {m[len(prefix):] for m in members}


def test_sdist_holds_the_source_tree(sdist):
    expected = set()
    for top in ("csrc", "vggkern", "tests", "benchmarks", "docs"):
        expected |= source_files(top)
    expected |= {"setup.py", "pyproject.toml", "README.md", "CMakeLists.txt", "MANIFEST.in", "requirements-dev.txt"}
    raw_results = {p for p in expected if p.startswith("benchmarks/results/") and p.endswith((".json", ".png"))}
    assert sorted(expected - raw_results - sdist) == []
    # less the GPU runs' raw results (MANIFEST.in), ~11 MB that no build reads
    assert raw_results and sorted(raw_results & sdist) == []
    # and every kind of source setup.py may compile, whichever build the sdist's user makes
    for suffix in (".cpp", ".cu", ".cuh", ".h"):
        assert any(p.startswith("csrc/") and p.endswith(suffix) for p in sdist), suffix


def test_sdist_leaves_out_build_outputs(sdist):
    assert [p for p in sdist if p.endswith(SKIP_SUFFIXES) or "__pycache__" in p.split("/")] == []


def test_every_include_resolves_inside_the_sdist(sdist):
    """Each `#include "..."` of a shipped C++/CUDA file names a shipped file (found next
    to the includer or under csrc/, setup.py's include directory)."""
    include = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
    checked = 0
    for path in sorted(p for p in sdist if p.startswith("csrc/")):
        if not path.endswith((".cpp", ".cu", ".cuh", ".h")):
            continue
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            for target in include.findall(f.read()):
                candidates = [os.path.normpath(os.path.join(os.path.dirname(path), target)),
                              os.path.normpath(os.path.join("csrc", target))]
                assert any(c in sdist for c in candidates), f"{path} includes {target!r}: not in the sdist"
                checked += 1
    assert checked > 50  # the sources do include each other: the walk above saw them


# ---- loading the extension: built against the torch that runs it, or a clear error --------

def test_extension_was_built_against_the_running_torch():
    import torch
    import vggkern
    # TORCH_VERSION is X.Y.Z; a source or nightly torch's version goes on ("2.14.0a0+git...")
    assert vggkern._C.TORCH_VERSION == re.match(r"\d+\.\d+\.\d+", torch.__version__).group(0)
    assert vggkern.build_info()["torch_version"] == vggkern._C.TORCH_VERSION


def test_torch_mismatch_rule():
    from vggkern import _torch_mismatch
    assert _torch_mismatch("2.14.1", "2.14.1+cu130") is None
    assert _torch_mismatch("2.14.0", "2.14.1") is None  # patch releases keep the C++ ABI
    for built, running in (("2.13.0", "2.14.1+cu130"), ("3.14.1", "2.14.1"), ("2.11.0", "2.1.0")):
        message = _torch_mismatch(built, running)
        assert message is not None and built in message and running in message and "--no-build-isolation" in message


def run_python(code, *flags, root=ROOT):
    """`python FLAGS -c CODE` in ``root``, which comes first on its path (vggkern from there)."""
    path = os.pathsep.join([str(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, *flags, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=path))


def load_failure(proc):
    assert proc.returncode == 0, proc.stderr[-2000:]
    import torch
    out = proc.stdout
    assert out.startswith("ERR vggkern's compiled extension (vggkern._C) did not load"), out
    assert f"torch {torch.__version__}" in out and "--no-build-isolation" in out, out
    assert out.rstrip().endswith("| cause is an ImportError: True"), out  # the loader's own error is chained
    return out


IMPORT = ("import sys, torch\n{}\ntry:\n    import vggkern\nexcept ImportError as e:\n"
          "    print('ERR', e, '| cause is an ImportError:', isinstance(e.__cause__, ImportError))\n")


def test_a_missing_extension_is_a_clear_import_error():
    # As if vggkern._C were not built (None in sys.modules makes its import fail).
    load_failure(run_python(IMPORT.format("sys.modules['vggkern._C'] = None")))


def test_an_extension_of_older_sources_is_a_clear_import_error():
    # An editable install pulled forward and not rebuilt: a _C that loads but lacks what
    # this package reads of it (here: a module with nothing in it).
    proc = run_python(IMPORT.format("import types; sys.modules['vggkern._C'] = types.ModuleType('vggkern._C')"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ERR vggkern's compiled extension (vggkern._C) did not load: it was built from "
                                  "older vggkern sources"), proc.stdout
    assert "--no-build-isolation" in proc.stdout, proc.stdout


def test_an_extension_that_cannot_link_is_a_clear_import_error(tmp_path):
    """What an extension built against another torch does: the loader cannot resolve a
    symbol it needs. Here a vggkern/_C whose init calls a function nothing defines."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in extension")
    package = tmp_path / "vggkern"
    shutil.copytree(os.path.join(ROOT, "vggkern"), package,
                    ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    source = tmp_path / "stand_in.c"
    source.write_text("extern void *vk_symbol_of_another_torch(void);\n"
                      "void *PyInit__C(void) { return vk_symbol_of_another_torch(); }\n")
    import sysconfig
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(package / ("_C" + sysconfig.get_config_var("EXT_SUFFIX"))),
                    str(source)], check=True, timeout=120)
    out = load_failure(run_python(IMPORT.format(""), root=tmp_path))
    assert "undefined symbol: vk_symbol_of_another_torch" in out, out
    assert str(tmp_path) in out, out  # it was the stand-in that failed, not the real build


def test_import_warns_nothing_when_the_versions_match():
    proc = run_python("import vggkern", "-W", "error::RuntimeWarning")
    assert proc.returncode == 0, proc.stderr[-2000:]
