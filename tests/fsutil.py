"""Real read-only folders and full disks for the reliability tests.

As root, ``chmod`` does not stop writes, so a read-only folder is a read-only tmpfs or bind
mount (when this process may mount); a full disk is a tiny tmpfs. Without mount rights they
fall back to ``chmod`` (effective for other users) or skip the test with the reason.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def can_mount(probe: Path) -> bool:
    probe.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)):
        return False
    subprocess.run(["umount", str(probe)], check=True)
    return True


@contextmanager
def tmpfs(path: Path, size: str = "1m", readonly: bool = False):
    """A tmpfs of ``size`` at ``path`` (``readonly``: mounted ro); skips without mount rights."""
    path.mkdir(parents=True, exist_ok=True)
    if not can_mount(path):
        if readonly and os.geteuid() != 0:
            path.chmod(0o555)
            try:
                yield path
            finally:
                path.chmod(0o755)
            return
        pytest.skip("needs mount rights (a tmpfs) to make a read-only folder or a full disk as root")
    opts = f"size={size}" + (",ro" if readonly else "")
    assert _mount("-t", "tmpfs", "-o", opts, "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def snapshot(root: Path) -> dict:
    """Every path under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@contextmanager
def read_only_copy(src: Path, dst: Path):
    """A copy of ``src`` at ``dst`` that cannot be written: a read-only bind mount when we may
    mount, else files and folders without write permission."""
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    mounted = shutil.which("mount") is not None and _mount("--bind", str(dst), str(dst))
    if mounted and not _mount("-o", "remount,bind,ro", str(dst)):
        subprocess.run(["umount", str(dst)], check=False)
        mounted = False
    try:
        yield dst
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(dst)], check=False)
        for p in [dst, *dst.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
