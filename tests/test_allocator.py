"""sim.world.allocator: freed blocks are reused without page faults, where glibc allows."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# A child process: allocate, touch and free 256 MiB twice through libc itself (numpy may back
# big arrays with huge pages, which hides the faults); print the page faults of the second pass.
_TWICE = """
import ctypes, resource, sys
sys.path.insert(0, {root!r})
from sim.world.allocator import reuse_freed_memory
if {reuse}:
    assert reuse_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
size = 256 << 20
def touch():
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_pass_faults(reuse: bool) -> int:
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", _TWICE.format(root=root, reuse=reuse)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_memory_is_reused_without_page_faults():
    pages = (256 << 20) // 4096
    fresh = _second_pass_faults(reuse=False)
    if fresh < pages // 4:
        pytest.skip(f"this machine backs fresh memory with huge pages ({fresh} faults)")
    reused = _second_pass_faults(reuse=True)
    assert fresh > 0.9 * pages  # glibc maps the block afresh: a fault for every page
    assert reused < 0.01 * pages  # the heap keeps the freed block: no fault at all


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_the_setting_takes_unless_opted_out_as_a_dask_nanny_may_want():
    code = (
        "import os\n"
        "from sim.world.allocator import reuse_freed_memory\n"
        "print(reuse_freed_memory())\n"
        "os.environ['FISHSCHOOL_KEEP_MALLOC_TRIM'] = '1'\n"
        "print(reuse_freed_memory())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "FISHSCHOOL_KEEP_MALLOC_TRIM"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    glibc = platform.libc_ver()[0] == "glibc"
    assert out.stdout.split() == [str(glibc), "False"]
