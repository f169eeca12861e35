"""Artifact store commit semantics and stage keys (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mcl_ray.errors import ArtifactError, ConfigError
from mcl_ray.plan.from_config import load_config, stage_specs
from mcl_ray.store import ArtifactStore, cluster_key, stage_key


def test_entry_is_absent_until_committed_and_round_trips(tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    entry = store.stage("abc")
    assert not entry.is_complete()
    entry.put_array("x.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    entry.put_state("encoder.pt", {"w": torch.ones(2)})
    entry.put_json("history.json", [{"epoch": 1}])
    assert not entry.is_complete()  # files without the marker: a crashed write, not a finished stage
    entry.commit({"stage": 1})
    assert entry.is_complete() and entry.meta()["stage"] == 1
    np.testing.assert_array_equal(entry.get_array("x.npy"), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert torch.equal(entry.get_state("encoder.pt")["w"], torch.ones(2))
    assert entry.get_json("history.json") == [{"epoch": 1}]
    assert not list((tmp_path / "store" / "stages" / "abc").glob("*.tmp-*"))  # no temp files left behind
    entry.clear()
    assert not entry.is_complete()


class Planted:
    """Any pickled object: loading it with weights_only=False could run code."""


def _committed(tmp_path):
    entry = ArtifactStore(str(tmp_path / "store")).stage("k")
    entry.put_state("encoder.pt", {"w": torch.arange(50.0)})
    entry.put_array("groups.npy", np.arange(40))
    entry.commit({"stage": 1})
    return entry, tmp_path / "store" / "stages" / "k"


def test_commit_lists_every_file_with_size_and_checksum(tmp_path):
    import hashlib
    import json

    entry, folder = _committed(tmp_path)
    files = json.loads((folder / "_COMPLETE.json").read_text())["files"]
    assert sorted(files) == ["encoder.pt", "groups.npy"]
    for name, record in files.items():
        data = (folder / name).read_bytes()
        assert record == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert entry.problem(deep=True) is None


def test_markers_written_before_files_were_listed_are_still_trusted(tmp_path):
    entry, folder = _committed(tmp_path)
    (folder / "_COMPLETE.json").write_text('{"stage": 1, "committed_at": 1764000000.0}')  # mcl-ray 0.1's marker
    assert entry.is_complete()  # a stage cache from the previous version is not thrown away
    entry.uncommit()
    assert not entry.is_complete() and (folder / "encoder.pt").exists()


@pytest.mark.parametrize("damage", ["garbage_marker", "marker_without_files", "deleted_file", "truncated_file"])
def test_a_damaged_entry_counts_as_unfinished_with_a_warning(tmp_path, damage, caplog):
    entry, folder = _committed(tmp_path)
    if damage == "garbage_marker":
        (folder / "_COMPLETE.json").write_text("{not json")
    elif damage == "marker_without_files":
        (folder / "_COMPLETE.json").write_text('{"stage": 1}')
    elif damage == "deleted_file":
        (folder / "groups.npy").unlink()
    else:
        data = (folder / "encoder.pt").read_bytes()
        (folder / "encoder.pt").write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING", logger="mcl_ray"):
        assert not entry.is_complete()
    reason = {"garbage_marker": "unreadable", "marker_without_files": "lists no files",
              "deleted_file": "groups.npy listed in _COMPLETE.json is missing", "truncated_file": "encoder.pt has"}[damage]
    assert reason in caplog.text and "will be rebuilt" in caplog.text and str(folder) in caplog.text


def test_a_same_size_change_is_caught_by_the_checksum_when_read(tmp_path):
    entry, folder = _committed(tmp_path)
    data = bytearray((folder / "groups.npy").read_bytes())
    data[-1] ^= 0xFF
    (folder / "groups.npy").write_bytes(bytes(data))
    assert entry.is_complete()  # sizes agree: the cheap check passes ...
    assert "does not match its checksum" in entry.problem(deep=True)
    with pytest.raises(ArtifactError, match=r"stages/k/groups.npy does not match the checksum"):
        entry.get_array("groups.npy")  # ... and the read refuses it, naming entry and file
    with pytest.raises(ArtifactError, match=r"stages/k: cannot read missing.npy"):
        entry.get_array("missing.npy")


def test_tensor_files_holding_pickled_objects_are_refused(tmp_path):
    from mcl_ray.store.artifacts import load_tensors

    entry = ArtifactStore(str(tmp_path)).stage("k")
    entry.put_state("encoder.pt", {"w": torch.ones(2), "extra": Planted()})
    with pytest.raises(ArtifactError, match=r"stages/k/encoder.pt: refused to load"):
        entry.get_state("encoder.pt")
    path = tmp_path / "state.pt"  # the Ray worker's epoch-checkpoint path goes through the same loader
    torch.save({"method": {"w": torch.ones(1)}, "epoch": 3, "history": [{"loss": 1.5}], "hook": Planted()}, path)
    with pytest.raises(ArtifactError, match="refused to load"):
        load_tensors(path, f"epoch checkpoint {path}")
    torch.save({"method": {"w": torch.ones(1)}, "epoch": 3, "history": [{"loss": 1.5, "stage": 1}]}, path)
    assert load_tensors(path, "ok")["epoch"] == 3
    path.write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="not a readable tensor file"):
        load_tensors(path, "garbage checkpoint")


def test_weights_load_with_weights_only(tmp_path):
    entry = ArtifactStore(str(tmp_path)).stage("k")
    entry.put_state("encoder.pt", {"w": torch.arange(3.0)})
    loaded = torch.load(tmp_path / "stages" / "k" / "encoder.pt", weights_only=True)
    assert torch.equal(loaded["w"], torch.arange(3.0))


def test_store_accepts_file_uris_and_rejects_unknown_schemes(tmp_path):
    store = ArtifactStore(f"file://{tmp_path}")
    store.clusters("c").put_json("a.json", {"a": 1})
    assert (tmp_path / "clusters" / "c" / "a.json").exists()
    with pytest.raises(ConfigError, match="storage: cannot open 'nosuch://bucket'"):
        ArtifactStore("nosuch://bucket")


BASE = ["mcl.stages=3", "mcl.clusters=[4, 6]", "train.epochs=2"]


def keys(*overrides):
    """The (stage, clustering) keys of every stage, chained as plan.sequence.run_stages chains them."""
    cfg = load_config(overrides=[*BASE, *overrides])
    scope = None if cfg.ray.reuse_stages else cfg.name
    out, prev_c, prev_s = [], None, None
    for spec in stage_specs(cfg):
        s = stage_key(spec.identity(), prev_c, prev_s if spec.init == "previous" else None, scope=scope)
        c = cluster_key(spec.clustering.__dict__, s, prev_c, scope=scope) if spec.clustering else None
        out.append((s, c))
        prev_c, prev_s = c, s
    return out


def test_stage_keys_change_exactly_where_the_stage_changes():
    base = keys()
    assert len({s for s, _ in base}) == 3
    assert keys() == base  # deterministic
    # K after stage 2 only changes what comes after that clustering
    k2 = keys("mcl.clusters=[4, 8]")
    assert k2[0] == base[0] and k2[1][0] == base[1][0] and k2[1][1] != base[1][1] and k2[2][0] != base[2][0]
    # K after stage 1 changes stage 2 onwards, never stage 1's training
    k1 = keys("mcl.clusters=[5, 6]")
    assert k1[0][0] == base[0][0] and k1[0][1] != base[0][1] and k1[1][0] != base[1][0]
    # a later stage's temperature leaves earlier stages alone
    t = keys("mcl.temperatures=[0.2, 0.2, 0.5]")
    assert t[:2] == keys("mcl.temperatures=[0.2, 0.2, 0.2]")[:2] and t[2][0] != base[2][0]
    # everything training depends on changes every key
    for change in ("seed=1", "train.lr=0.01", "model.proj_dim=64", "data.train_size=100", "augment.blur=0.5", "train.workers=2",
                   "objective.name=moco", "objective.regularizers=[{name: dimcl}]"):
        assert all(a[0] != b[0] for a, b in zip(keys(change), base)), change
    # what training does not depend on changes nothing
    for same in ("eval.knn_k=5", "name=other", "output_dir=/elsewhere", "train.log_every=7", "data.download=false",
                 "train.device=cpu", "objective.momentum=0.5"):  # simclr ignores MoCo's options
        assert keys(same) == base, same


def test_reuse_off_scopes_keys_to_the_run_name():
    assert keys("ray.reuse_stages=false", "name=a") != keys()
    assert keys("ray.reuse_stages=false", "name=a") == keys("ray.reuse_stages=false", "name=a")
    assert keys("ray.reuse_stages=false", "name=a") != keys("ray.reuse_stages=false", "name=b")


def test_an_unwritable_storage_is_an_error_naming_the_path(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(ArtifactError, match=r"cannot write .*runs/stages/k/x.npy.*output_dir / ray.storage"):
        ArtifactStore(str(blocker)).stage("k").put_array("x.npy", np.zeros(2))


def test_stage_one_is_shared_by_both_sampling_policies_later_stages_are_not():
    group, mixed = (stage_specs(load_config(None, ["mcl.stages=2", f"mcl.sampling={p}"]))
                    for p in ("group_batches", "random_batches"))
    assert group[0].identity() == mixed[0].identity()  # no groups yet: the same ordinary batches
    assert group[1].identity() != mixed[1].identity()
