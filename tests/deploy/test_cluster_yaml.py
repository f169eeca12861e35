"""Offline checks of cluster.yaml, the AWS GPU cluster config for `ray up cluster.yaml`.

Validation uses the autoscaler's own code path (`prepare_config` merges the AWS provider defaults,
`validate_config` checks the result against Ray's JSON schema), with no cloud credentials, no boto3 and
no network. The AWS-side bootstrap (AMI, IAM, subnets, security groups) needs boto3 and an account and is
not exercised here.
"""

from __future__ import annotations

import copy
import re
import socket
import sys
import tomllib
from pathlib import Path
from typing import Any, Iterator

import pytest
import ray
import yaml
from jsonschema import ValidationError
from packaging.version import Version
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "cluster.yaml"
CONTAINER_HOME = "/home/ray"  # HOME of the `ray` user in the rayproject/ray images
PROJECT_REMOTE = f"{CONTAINER_HOME}/mcl-ray"
TOKEN_REMOTE_DIR = f"{CONTAINER_HOME}/.ray"
TOKEN_LOCAL_DIR = "~/.ray/mcl-ray"
GPU_FAMILIES = ("g4dn.", "g5.", "g6.", "g6e.", "p3.", "p4d.", "p4de.", "p5.")


@pytest.fixture(scope="module")
def cfg() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def prepared(cfg: dict[str, Any]) -> dict[str, Any]:
    return prepare_config(copy.deepcopy(cfg))


def strings(obj: Any) -> Iterator[str]:
    """Every key and string value in a parsed YAML document."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings(v)
    elif isinstance(obj, str):
        yield obj


def start_commands(cfg: dict[str, Any]) -> list[str]:
    return cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]


# --- validation ------------------------------------------------------------------------------------


def test_validates_offline_without_boto3_or_network(cfg, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("cluster config validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    boto3_before = "boto3" in sys.modules

    config = prepared(cfg)
    validate_config(config)

    assert boto3_before or "boto3" not in sys.modules, "prepare/validate imported boto3"
    assert config["provider"]["type"] == "aws"
    assert config["cluster_name"] == "mcl-ray"


def test_raw_yaml_needs_prepare_config_first(cfg):
    # Documents why the tests merge the provider defaults first: the raw file lacks defaulted fields.
    raw = copy.deepcopy(cfg)
    raw.pop("cluster_synced_files", None)
    with pytest.raises(RuntimeError, match="cluster_synced_files"):
        validate_config(raw)


def _rename(d: dict, old: str, new: str) -> None:
    d[new] = d.pop(old)


@pytest.mark.parametrize(
    "mutate, error, message",
    [
        pytest.param(lambda c: _rename(c, "setup_commands", "setup_comands"), ValidationError, "'setup_comands' was unexpected",
                     id="top-level-key-typo"),
        pytest.param(
            lambda c: _rename(c["available_node_types"]["gpu_worker"], "min_workers", "min_worker"),
            ValidationError, "'min_worker' was unexpected", id="node-type-key-typo",
        ),
        pytest.param(lambda c: _rename(c["docker"], "pull_before_run", "pull_before_runn"), ValidationError,
                     "'pull_before_runn' was unexpected", id="docker-key-typo"),
        pytest.param(lambda c: c.__setitem__("max_workers", "four"), ValidationError, "'four' is not of type 'integer'",
                     id="wrong-type"),
        pytest.param(lambda c: c.__setitem__("head_node_type", "head_node"), ValueError,
                     "`head_node_type` must be one of `available_node_types`", id="unknown-head-type"),
    ],
)
def test_validator_rejects_broken_configs(cfg, mutate, error, message):
    broken = copy.deepcopy(cfg)
    mutate(broken)
    with pytest.raises(error, match=re.escape(message)):
        validate_config(prepared(broken))


def test_no_ray_default_commands_leak_in(cfg):
    # Keys left out of cluster.yaml are filled from Ray's AWS defaults.yaml (including a nightly-wheel
    # `pip install ray` and an anaconda PATH hack); every command list must come from this file.
    config = prepared(cfg)
    for key in ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands"):
        assert key in cfg, f"{key} is not set in cluster.yaml, so Ray's defaults would be used"
    everything = "\n".join(strings(config))
    assert "ray-wheels" not in everything and "anaconda3" not in everything


# --- node types ------------------------------------------------------------------------------------


def test_cluster_shape(cfg):
    assert cfg["provider"]["region"] == "us-west-2"
    assert cfg["provider"]["availability_zone"] == "us-west-2a,us-west-2b"
    assert cfg["provider"]["cache_stopped_nodes"] is False
    assert cfg["auth"]["ssh_user"] == "ubuntu"
    assert cfg["head_node_type"] == "head"
    assert cfg["max_workers"] == 4
    assert cfg["idle_timeout_minutes"] == 10
    assert cfg["upscaling_speed"] == 1.0


def test_head_is_cpu_and_worker_is_gpu(cfg):
    types = cfg["available_node_types"]
    assert set(types) == {"head", "gpu_worker"}

    head = types["head"]
    head_instance = head["node_config"]["InstanceType"]
    assert head_instance == "m5.2xlarge"
    assert not head_instance.startswith(GPU_FAMILIES)
    assert head["resources"] == {}, "head must stay schedulable for the Tune drivers (no CPU: 0 override)"

    worker = types["gpu_worker"]
    worker_instance = worker["node_config"]["InstanceType"]
    assert worker_instance == "g5.2xlarge"
    assert worker_instance.startswith(GPU_FAMILIES)
    assert worker["min_workers"] == 0 and worker["max_workers"] == 4
    assert worker["max_workers"] <= cfg["max_workers"]


def test_disks_and_ami(cfg):
    for name, node in cfg["available_node_types"].items():
        node_config = node["node_config"]
        (mapping,) = node_config["BlockDeviceMappings"]
        assert mapping["DeviceName"] == "/dev/sda1", name
        assert mapping["Ebs"]["VolumeSize"] >= 200 and mapping["Ebs"]["VolumeType"] == "gp3", name
        # The Ray AWS provider replaces "latest_dlami" with its built-in per-region default AMI.
        assert node_config["ImageId"] == "latest_dlami" or node_config["ImageId"].startswith("ami-"), name


def test_latest_dlami_is_understood_by_this_ray():
    # _check_ami is only reachable with boto3, so check the source of the installed provider instead.
    import importlib.util

    spec = importlib.util.find_spec("ray.autoscaler._private.aws.config")
    source = Path(spec.origin).read_text()
    assert '"latest_dlami"' in source
    assert re.search(r'"us-west-2":\s*"ami-[0-9a-f]+"', source), "no default AMI for us-west-2"


# --- docker image ----------------------------------------------------------------------------------


def test_docker_image_matches_installed_ray(cfg):
    docker = cfg["docker"]
    m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-gpu", docker["image"])
    assert m, f"unexpected image {docker['image']!r} (rayproject/ray-ml images are discontinued)"
    local = ".".join(str(p) for p in Version(ray.__version__).release[:3])
    assert m.group(1) == local, f"image has Ray {m.group(1)}, this environment has Ray {ray.__version__}"
    assert docker["container_name"] == "ray_container"
    assert docker["pull_before_run"] is True
    assert docker["run_options"] == ["--ulimit nofile=65536:65536"]


# --- security --------------------------------------------------------------------------------------


def test_dashboard_is_not_exposed(cfg):
    for cmd in start_commands(cfg):
        assert "--dashboard-host=0.0.0.0" not in cmd
        assert not re.search(r"--dashboard-host[= ]+['\"]?0\.0\.0\.0", cmd), cmd
    head_start = [c for c in cfg["head_start_ray_commands"] if "ray start --head" in c]
    assert len(head_start) == 1
    assert "--dashboard-host=127.0.0.1" in head_start[0]


def test_start_commands(cfg):
    assert cfg["head_start_ray_commands"][0] == "ray stop"
    assert cfg["worker_start_ray_commands"][0] == "ray stop"
    (head,) = cfg["head_start_ray_commands"][1:]
    (worker,) = cfg["worker_start_ray_commands"][1:]
    assert head.startswith(
        "ulimit -n 65536; export RAY_AUTH_MODE=token; ray start --head --port=6379 --object-manager-port=8076"
    )
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert worker == (
        "ulimit -n 65536; export RAY_AUTH_MODE=token; ray start --address=$RAY_HEAD_IP:6379 --object-manager-port=8076"
    )


# --- token authentication --------------------------------------------------------------------------
# Ray 2.60 enforces tokens on a `ray start` cluster only with RAY_AUTH_MODE=token in the environment of
# `ray start` on every node; the token comes from RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, else
# ~/.ray/auth_token (ray/_private/authentication/authentication_token_setup.py, _get_default_token_path).

AUTH_MODE_ASSIGNMENT = re.compile(r"RAY_AUTH_MODE\s*[=:]\s*['\"]?(\w*)")


def test_every_ray_start_runs_in_token_mode(cfg):
    ray_starts = [c for c in start_commands(cfg) if "ray start" in c]
    assert len(ray_starts) == 2, ray_starts
    for cmd in ray_starts:
        # Exported in the same shell, before `ray start`: the GCS, raylet, dashboard and autoscaler it
        # launches inherit the mode.
        m = re.search(r"(?:^|;\s*)export RAY_AUTH_MODE=token;", cmd)
        assert m and m.end() <= cmd.index("ray start"), cmd


def test_drivers_on_the_nodes_run_in_token_mode(cfg):
    # `ray submit` / `ray exec` / `ray attach` commands run through `bash -i`, which reads ~/.bashrc.
    line = "export RAY_AUTH_MODE=token"
    appends = [c for c in cfg["setup_commands"] if f"echo '{line}' >> ~/.bashrc" in c]
    assert len(appends) == 1, cfg["setup_commands"]
    # Idempotent: setup_commands run again on every `ray up`.
    assert appends[0].startswith(f"grep -qxF '{line}' ~/.bashrc || ")


def _key_values(obj: Any) -> Iterator[str]:
    """`key: value` of every mapping entry with a scalar value, as "key=value" (e.g. an env mapping)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)):
                yield from _key_values(v)
            else:
                yield f"{k}={v}"
    elif isinstance(obj, list):
        for v in obj:
            yield from _key_values(v)


def test_token_auth_is_never_disabled(cfg):
    config = prepared(cfg)  # Ray's merged defaults included
    texts = [*strings(config), *_key_values(config)]
    modes = {m.group(1).lower() for s in texts for m in AUTH_MODE_ASSIGNMENT.finditer(s)}
    assert modes == {"token"}, modes
    # Token and token path are left to the mounted default file; no token in the config itself.
    assert not [s for s in strings(config) if "RAY_AUTH_TOKEN" in s]
    # Not even a comment suggests disabling it.
    text = CLUSTER_YAML.read_text()
    assert {m.group(1).lower() for m in AUTH_MODE_ASSIGNMENT.finditer(text)} == {"token"}


def test_token_is_mounted_where_ray_looks_for_it(cfg, monkeypatch):
    from ray._private.authentication.authentication_token_setup import _get_default_token_path

    monkeypatch.setenv("HOME", CONTAINER_HOME)
    default_path = _get_default_token_path()
    assert default_path == Path(TOKEN_REMOTE_DIR) / "auth_token"
    # The token's directory is mounted, not the file: a bind-mounted file goes stale when re-synced.
    assert cfg["file_mounts"][TOKEN_REMOTE_DIR] == TOKEN_LOCAL_DIR
    # The node setup fails early if the token is not there.
    assert "test -s ~/.ray/auth_token" in cfg["setup_commands"]


def _token_command() -> str:
    """The command in the header comment that creates the token before `ray up`."""
    (line,) = [ln for ln in CLUSTER_YAML.read_text().splitlines() if "token_hex" in ln]
    assert line.startswith("#   ")
    return line[4:]


def test_documented_token_command_makes_a_token_ray_reads(tmp_path):
    import os
    import shutil
    import subprocess

    command = _token_command()
    assert f"> {TOKEN_LOCAL_DIR}/auth_token" in command
    laptop, node = tmp_path / "laptop", tmp_path / "node"
    laptop.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run(["bash", "-c", command], check=True, env={**env, "HOME": str(laptop)})
    local_dir = laptop / TOKEN_LOCAL_DIR.removeprefix("~/")
    token = (local_dir / "auth_token").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", token), token  # Ray's own format: secrets.token_hex(32)
    assert (local_dir / "auth_token").stat().st_mode & 0o077 == 0, "token readable by others"

    # What file_mounts does: the directory shows up as ~/.ray on the node. Ray's C++ token loader
    # (the one the GCS, raylets and drivers use) must find the token there with no RAY_AUTH_* variables.
    shutil.copytree(local_dir, node / ".ray")
    probe = (
        "from ray._raylet import AuthenticationTokenLoader as L; "
        "print(L.instance().get_raw_token(ignore_auth_mode=True), end='')"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, env={**env, "HOME": str(node)}
    ).stdout
    assert loaded == token


# --- project sync and setup ------------------------------------------------------------------------


def test_file_mounts_sync_the_project_root(cfg):
    assert cfg["file_mounts"] == {PROJECT_REMOTE: ".", TOKEN_REMOTE_DIR: TOKEN_LOCAL_DIR}
    # "." is relative to where `ray up` runs: the repository root, where cluster.yaml lives.
    assert (CLUSTER_YAML.parent / "pyproject.toml").is_file()
    excluded = cfg["rsync_exclude"]
    for pattern in (".venv", ".git", "__pycache__", "runs"):
        assert any(pattern in p for p in excluded), f"{pattern} is synced to the cluster"


def test_setup_installs_the_project_with_the_gpu_extra(cfg):
    setup = cfg["setup_commands"]
    editable_gpu = re.compile(r"pip install .*-e\s+['\"]?" + re.escape(PROJECT_REMOTE + "[gpu]"))
    installs = [i for i, c in enumerate(setup) if editable_gpu.search(c)]
    assert len(installs) == 1, setup
    uninstall = next(i for i, c in enumerate(setup) if "pip uninstall -y faiss-cpu" in c)
    reinstall = next(i for i, c in enumerate(setup) if "--force-reinstall" in c and "faiss-gpu" in c)
    # faiss-cpu and faiss-gpu share the faiss/ files: uninstalling faiss-cpu after the install deletes them,
    # so faiss-gpu has to be reinstalled afterwards.
    assert installs[0] < uninstall < reinstall

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    gpu_extra = pyproject["project"]["optional-dependencies"]["gpu"]
    assert any(dep.startswith("faiss-gpu") for dep in gpu_extra)
    assert any(f'"{dep}"' in setup[reinstall] for dep in gpu_extra), "reinstall a different faiss-gpu spec"
    assert any(dep.startswith("faiss-cpu") for dep in pyproject["project"]["dependencies"])
