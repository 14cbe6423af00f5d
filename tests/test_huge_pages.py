"""growth.huge_pages: when an entry point re-executes itself with glibc's hugetlb tunable, and that it then
takes the kernel's huge pages (far fewer page faults on a large block touched after each allocation)."""

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from growth import huge_pages

REPO = Path(__file__).resolve().parents[1]
GLIBC = (2, 36)


@pytest.mark.parametrize(
    ("environ", "glibc", "mode", "expected"),
    [
        ({}, GLIBC, "madvise", "glibc.malloc.hugetlb=1"),
        (
            {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
            GLIBC,
            "madvise",
            "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1",
        ),
        ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, GLIBC, "madvise", None),  # the user decided
        ({"GROWTH_HUGE_PAGES": "0"}, GLIBC, "madvise", None),  # opted out
        ({}, GLIBC, "always", None),  # every mapping has them already
        ({}, GLIBC, "never", None),  # none can have them
        ({}, GLIBC, "", None),  # no transparent huge pages (not Linux)
        ({}, (2, 34), "madvise", None),  # a glibc without the tunable
        ({}, None, "madvise", None),  # not glibc
    ],
)
def test_the_tunable_is_added_only_where_it_can_help(environ, glibc, mode, expected):
    env = huge_pages.environment_with_tunable(environ, glibc, mode)
    assert (env and env["GLIBC_TUNABLES"]) == expected
    if env is not None:
        assert {k: v for k, v in env.items() if k != "GLIBC_TUNABLES"} == {
            k: v for k, v in environ.items() if k != "GLIBC_TUNABLES"
        }


def test_thp_mode_reads_the_bracketed_choice(tmp_path):
    f = tmp_path / "enabled"
    f.write_text("always [madvise] never\n")
    assert huge_pages.thp_mode(f) == "madvise"
    assert huge_pages.thp_mode(tmp_path / "missing") == ""


def _child_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", huge_pages.OPT_OUT)}
    return env | {"PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]), **extra}


def test_a_package_module_run_with_dash_m_re_executes_and_an_import_does_not(tmp_path):
    pkg = tmp_path / "entry"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from growth import huge_pages\nhuge_pages.reexec_if_run_as_module()\n")
    (pkg / "show.py").write_text("import os, sys\nprint(os.environ.get('GLIBC_TUNABLES'), sys.argv[1:])\n")
    env = _child_env()
    run = subprocess.run(
        [sys.executable, "-m", "entry.show", "a=1", "b"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    tunables, argv = run.stdout.strip().split(" ", 1)
    want = huge_pages.environment_with_tunable(env, huge_pages.glibc_version(), huge_pages.thp_mode())
    assert tunables == (want["GLIBC_TUNABLES"] if want else "None")
    assert argv == "['a=1', 'b']"  # the same command line after the re-execution
    imported = subprocess.run(
        [sys.executable, "-c", "import entry, os; print(os.environ.get('GLIBC_TUNABLES'))"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.stdout.strip() == "None"
    opted_out = subprocess.run(
        [sys.executable, "-m", "entry.show"],
        cwd=tmp_path,
        env=env | {huge_pages.OPT_OUT: "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert opted_out.stdout.split(" ")[0] == "None"


@pytest.mark.parametrize("package", ["experiments", "benchmarks"])
def test_the_entry_point_packages_re_execute(monkeypatch, package):
    calls = []
    monkeypatch.setattr(huge_pages, "reexec_if_run_as_module", lambda: calls.append(package))
    monkeypatch.delitem(sys.modules, package, raising=False)  # restored after the test
    importlib.import_module(package)
    assert calls == [package]


_FAULTS = textwrap.dedent(
    """
    import ctypes, resource
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):  # a fresh mapping each time, written whole, like a step's temporaries
        block = libc.malloc(160 << 20)
        ctypes.memset(block, 1, 160 << 20)
        libc.free(ctypes.c_void_p(block))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def test_with_the_tunable_a_large_block_takes_far_fewer_page_faults():
    with_tunable = huge_pages.environment_with_tunable({}, huge_pages.glibc_version(), huge_pages.thp_mode())
    if with_tunable is None:
        pytest.skip(f"the tunable does not apply here (transparent huge pages: {huge_pages.thp_mode() or 'none'})")

    def faults(env):
        run = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    plain = faults(_child_env())
    huge = faults(_child_env(GLIBC_TUNABLES=with_tunable["GLIBC_TUNABLES"]))
    assert plain > 4 * 30_000  # 40,960 small pages per block
    assert huge < plain / 20


def test_a_failed_re_execution_goes_on_with_one_line(monkeypatch, capsys):
    def fail(*_):
        raise PermissionError("exec denied")

    monkeypatch.setattr(sys, "argv", ["-m"])
    monkeypatch.setattr(huge_pages, "environment_with_tunable", lambda *_: {"GLIBC_TUNABLES": huge_pages.TUNABLE})
    monkeypatch.setattr(os, "execve", fail)
    huge_pages.reexec_if_run_as_module()  # returns: the run goes on
    assert "could not re-execute" in capsys.readouterr().err
