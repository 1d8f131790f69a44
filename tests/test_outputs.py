"""Output folders are safe: one run at a time holds a folder, no fresh run writes over another experiment's checkpoints, the
result files are one set (or marked incomplete), blocked paths are refused before any training, and files get the user's mode."""
import json, os, stat, subprocess, sys

import pytest

from fedrec_nb.experiment import ParameterError, load_results
from fedrec_nb.federated import run_federated
from fedrec_nb.records import RunLock, write_run_results

SMALL = dict(dataset="synthetic", rounds=1, local_epochs=1, embedding_dim=4, engine="sequential", progress=False, plots=False,
             ranking=False)


def test_a_second_run_in_a_held_folder_is_refused_naming_the_first(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".fedrec.lock").write_text(str(holder.pid))
        with pytest.raises(ParameterError, match=f"process {holder.pid} is running there"):
            run_federated(**SMALL, output_dir=str(tmp_path))
        assert not (tmp_path / "results.json").exists()
    finally:
        holder.kill(); holder.wait()
    run_federated(**SMALL, output_dir=str(tmp_path))   # the holder is gone: its lock is taken over
    assert (tmp_path / "results.json").exists() and not (tmp_path / ".fedrec.lock").exists()


def test_a_fresh_run_does_not_write_over_another_experiments_checkpoints(tmp_path):
    run_federated(**SMALL, output_dir=str(tmp_path))
    run_federated(**{**SMALL, "lr": 0.02, "overwrite": True}, output_dir=str(tmp_path))   # a finished run's checkpoint is replaced
    import torch
    ck = next((tmp_path / "checkpoints").glob("round_*.pt"))
    state = torch.load(ck, weights_only=True); state["params"]["rounds"] = 3; torch.save(state, ck)   # as if killed after round 1 of 3
    with pytest.raises(ParameterError, match="another run's checkpoint .*lr"):
        run_federated(**{**SMALL, "lr": 0.01, "overwrite": True}, output_dir=str(tmp_path))
    run_federated(**{**SMALL, "lr": 0.02, "rounds": 3, "resume": True}, output_dir=str(tmp_path))   # it can still be resumed


def test_blocked_paths_are_refused_before_training(tmp_path):
    (tmp_path / "a" / "results.json").mkdir(parents=True)
    with pytest.raises(ParameterError, match="results.json is a folder"):
        run_federated(**SMALL, output_dir=str(tmp_path / "a"))
    (tmp_path / "b").mkdir(); (tmp_path / "b" / "checkpoints").write_text("x")
    with pytest.raises(ParameterError, match="checkpoint_dir"):
        run_federated(**SMALL, output_dir=str(tmp_path / "b"), checkpoint_dir=str(tmp_path / "b" / "checkpoints"))


def test_an_interrupted_set_is_marked_and_refused(tmp_path, monkeypatch):
    import fedrec_nb.records as records
    def killed(*a, **k): raise KeyboardInterrupt("killed while writing")
    monkeypatch.setattr(records, "save_results", killed)
    with pytest.raises(KeyboardInterrupt): write_run_results(tmp_path, {"a": 1}, [{"round": 1}], [{"cid": 0}])
    with pytest.raises(ValueError, match="results.incomplete"): load_results(tmp_path)
    monkeypatch.undo()
    write_run_results(tmp_path, {"a": 1}, [{"round": 1}], [{"cid": 0}])
    assert load_results(tmp_path) == {"a": 1} and not (tmp_path / "results.incomplete").exists()


def test_result_files_get_the_users_mode(tmp_path):
    old = os.umask(0o022)
    try: run_federated(**SMALL, output_dir=str(tmp_path))
    finally: os.umask(old)
    for name in ("results.json", "results.csv", "clients.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_every_round_record_has_the_documented_fields(tmp_path):
    res = run_federated(**SMALL, output_dir=str(tmp_path))
    need = {"round", "train_loss", "clients", "clients_answered", "sampled", "dropped", "node_errors", "node_error_reasons",
            "bytes_down", "bytes_up", "rejected", "rejected_updates", "rejected_evaluations", "skipped", "samples",
            "train_seconds", "samples_per_s", "seconds", "test_mae", "test_rmse", "clients_evaluated"}
    assert need <= set(res["rounds"][0]), need - set(res["rounds"][0])
    assert res["rounds"][0]["skipped"] is False and res["rounds"][0]["samples"] > 0
