"""The conda environment files, checked offline (no conda on the development machine).

What can be checked without building them: conda-forge names for every dependency of pyproject.toml
with the same ranges, no pip section and no editable install from a relative path, every rule's
`conda:` naming a file that exists, and that a rule's script imports clipgeom where the package is
not installed (the environment a conda env gives it) through workflow/scripts/clipgeom.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from workflow_utils import REPO

ENVS = sorted((REPO / "envs").glob("*.yaml"))
# PyPI name -> conda-forge name; None: not needed inside a rule's environment (Snakemake itself and
# its executor plugin run outside the job's environment)
CONDA_NAME = {
    "torch": "pytorch",
    "open_clip_torch": "open-clip-torch",
    "matplotlib": "matplotlib-base",
    "PyYAML": "pyyaml",
    "snakemake": None,
    "snakemake-executor-plugin-slurm": None,
}


def _spec(line: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)", line)
    assert m, line
    return m.group(1), m.group(2).replace(" ", "")


def _pyproject_deps() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(_spec(d) for d in deps)


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_env_file_is_conda_forge_with_the_projects_ranges(env):
    doc = yaml.safe_load(env.read_text())
    assert doc["channels"][0] == "conda-forge" and "defaults" not in doc["channels"]
    deps = doc["dependencies"]
    assert all(isinstance(d, str) for d in deps), "a pip: section (conda would run pip from a copied env file)"
    assert not any("--editable" in d or d.strip().startswith("-e") for d in deps)
    conda = dict(_spec(d) for d in deps)
    for name, rng in _pyproject_deps().items():
        cname = CONDA_NAME.get(name, name)
        if cname is None:
            continue
        assert cname in conda, f"{env.name}: {name} (conda-forge: {cname}) missing"
        assert conda[cname] == rng, f"{env.name}: {cname} {conda[cname]!r} != pyproject's {rng!r}"
    assert "cuda-version" in conda  # the CUDA runtime of a GPU build is chosen through cuda-version
    py = conda["python"]
    assert ">=3.10" in py  # pyproject's requires-python


def test_every_rule_names_an_env_file_that_exists():
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        for rel in re.findall(r'conda:\s*\n\s*"([^"]+)"', text):
            assert (smk.parent / rel).resolve().is_file(), f"{smk.name}: conda: {rel}"


def test_scripts_import_the_workflows_own_package_where_it_is_not_installed():
    """Snakemake appends a script's folder to its sys.path; workflow/scripts/clipgeom links to src/clipgeom."""
    link = REPO / "workflow" / "scripts" / "clipgeom"
    assert link.is_symlink() and link.resolve() == (REPO / "src" / "clipgeom").resolve()
    code = (
        "import sys\n"
        f"src = {str((REPO / 'src').resolve())!r}\n"
        "sys.path[:] = [p for p in sys.path if p and __import__('os').path.realpath(p) != src]\n"
        "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        "try:\n"
        "    import clipgeom\n"
        "except ImportError:\n"
        "    print('not importable without the script folder')\n"
        f"sys.path.append({str(REPO / 'workflow' / 'scripts')!r})\n"
        "import clipgeom, clipgeom.config\n"
        "print(clipgeom.__file__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "not importable without the script folder"  # the check removed the installed package
    assert Path(lines[-1]) == REPO / "workflow" / "scripts" / "clipgeom" / "__init__.py"
