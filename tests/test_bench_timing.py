"""benchmarks/timing.py's input rotation: the sets rotated past L2, counted by distinct bytes."""
import torch

from benchmarks.timing import make_sets, tensor_bytes


def test_rotation_counts_a_shared_weight_once():
    weight = torch.empty(1000, dtype=torch.uint8)  # made once, shared by every set

    def inputs():
        return {"x": torch.empty(100, dtype=torch.uint8), "w": weight, "views": [weight[:10]]}

    sets, nbytes = make_sets(inputs, rotate_bytes=1500, max_sets=64)
    # 1000 (the weight, once) + 100 per set: 5 sets reach 1500; counting the weight per
    # set would have stopped at 2 sets (2200 bytes "rotated", 1200 distinct).
    assert len(sets) == 5 and nbytes == 1500 == tensor_bytes(sets)
    assert tensor_bytes([weight, weight[5:], weight.view(10, 100)]) == 1000
    # The cap, and a single set when one already holds enough.
    assert make_sets(inputs, rotate_bytes=10**9, max_sets=3)[1] == 1300
    assert len(make_sets(lambda: torch.empty(4096, dtype=torch.uint8), rotate_bytes=100)[0]) == 1


def test_the_commit_recorded(monkeypatch):
    """VGGKERN_GIT_COMMIT, where set, is the commit a run records (a .git that travelled with
    the device's copy may be an older commit's); git's HEAD stands beside it."""
    import os
    import subprocess

    from benchmarks.timing import environment

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True)
    monkeypatch.setenv("VGGKERN_GIT_COMMIT", "0123456789abcdef")
    env = environment("cpu")
    assert env["git_commit"] == "0123456789abcdef"
    monkeypatch.delenv("VGGKERN_GIT_COMMIT")
    if head.returncode == 0:  # a checkout (CI's clone is one)
        assert env["git_head"] == head.stdout.strip() and environment("cpu")["git_commit"] == env["git_head"]
    else:
        assert "git_head" not in env and environment("cpu")["git_commit"] == "unknown"
