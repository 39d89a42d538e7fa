"""What `pip install .` gives a user: the library, its shipped models (with the remote code each names) and the CLI;
the experiments that produce the docs' figures stay beside it, in the checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from conftest import REPO_ROOT


def test_the_wheel_holds_the_library_and_no_experiment(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO_ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("hf_supermask-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [name for name in names if name.startswith(("experiments/", "scripts/", "tests/", "benchmarks/"))]
    assert {"hf_supermask/cli.py", "hf_supermask/training.py", "hf_supermask/modeling/modeling_supermask.py"} <= names
    for folder in ("supermask-multi30k-en-de", "supermask-multi30k-directions/de-en"):
        shipped = f"hf_supermask/pretrained/{folder}/"
        for file in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "modeling_supermask.py"):
            assert shipped + file in names, shipped + file
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "hf-supermask = hf_supermask.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
