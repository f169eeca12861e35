"""The one registry type: decorator registration, names from a package without importing it, suggestions."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mcl_ray.errors import ConfigError
from mcl_ray.registry import Registry


def test_register_lookup_and_did_you_mean():
    reg = Registry("widget", "model.widget")

    @reg.register("Round")
    class Round:
        pass

    assert reg.names() == ["round"] and reg.get(" ROUND ") is Round and "round" in reg and "square" not in reg
    with pytest.raises(ConfigError, match=r"model.widget: unknown widget 'rund' \(did you mean 'round'\?\); known: round"):
        reg.get("rund")
    with pytest.raises(ConfigError, match="registered twice"):
        reg.register("round")(type("Other", (), {}))


def test_package_registries_list_names_from_files_and_import_on_first_use():
    """Every pluggable kind lists its entries without importing them (no torch), and finds each by file name."""
    code = (
        "import sys\n"
        "from mcl_ray.data.registry import DATA_SOURCES\n"
        "from mcl_ray.models.registry import BACKBONES, HEADS\n"
        "from mcl_ray.objectives.declarations import METHODS, REGULARIZERS\n"
        "print(DATA_SOURCES.names(), HEADS.names(), BACKBONES.names(), METHODS.names(), REGULARIZERS.names())\n"
        "print('torch' in sys.modules)\n"
        "METHODS.get('moco')\n"
        "print('mcl_ray.objectives.methods.moco' in sys.modules, 'mcl_ray.objectives.methods.simclr' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == (
        "['arrays', 'cifar10', 'cifar100', 'imagefolder', 'imagetext', 'labeled', 'randbit', 'stl10', 'trifeature', 'webdataset'] "
        "['linear', 'mocov2', 'none', 'simclr'] ['open_clip', 'timm'] ['clip', 'metaug', 'moco', 'simclr', 'spcl'] ['dimcl', 'ifm']"
    )
    assert out[1] == "False"
    assert out[2] == "True False"


def test_a_package_module_must_register_its_own_name(tmp_path, monkeypatch):
    pkg = tmp_path / "plugins_under_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "forgetful.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("plug-in", "some.field", "plugins_under_test")
    assert reg.names() == ["forgetful"]
    with pytest.raises(ConfigError, match="plugins_under_test.forgetful does not register a plug-in named 'forgetful'"):
        reg.get("forgetful")
