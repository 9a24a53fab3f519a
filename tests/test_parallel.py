"""mlr_core.parallel: a stage's runs in worker processes give the same bytes as one after the other, errors and
what workers record come back."""
import pytest
import torch

from mlr_core import parallel
from mlr_core.parallel import map_runs, resolve_workers, share_with_workers


def _train(seed: int) -> bytes:
    """A tiny seeded fit whose matmuls and reductions are large enough for ATen to split them by thread count."""
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(512, 256, generator=g), torch.zeros(256, 8, requires_grad=True)
    y = torch.randn(512, 8, generator=g)
    opt = torch.optim.SGD([w], lr=0.01)
    for _ in range(5):
        loss = (x @ w - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach().numpy().tobytes() + bytes([torch.get_num_threads()])


def test_the_outputs_do_not_depend_on_the_worker_count():
    one = map_runs(_train, [0, 1, 2], workers=1, device="cpu", desc="seq")
    two = map_runs(_train, [0, 1, 2], workers=2, device="cpu", desc="par")
    assert one == two and len(set(one)) == 3
    assert all(r[-1] == 1 for r in one)  # every run computed on one thread, in a worker or not
    assert one[0] == _one_thread_reference(0)


def _one_thread_reference(seed: int) -> bytes:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(seed)
    finally:
        torch.set_num_threads(before)


def _fails(x):
    if x == 2:
        raise ValueError(f"run {x}: bad input")
    return x


def test_a_workers_error_is_raised_in_the_stage():
    with pytest.raises(ValueError, match="run 2: bad input"):
        map_runs(_fails, [1, 2, 3], workers=2, device="cpu", desc="fails")


def test_what_a_worker_records_comes_back(monkeypatch):
    monkeypatch.setattr(parallel, "_WORKER_STATE", [])
    seen: set = set()
    share_with_workers(lambda: set(seen), seen.update)

    def record(x):
        seen.add(f"read {x}")  # in a worker: its own copy of the set
        return x

    assert map_runs(record, [1, 2, 3], workers=2, device="cpu", desc="reads") == [1, 2, 3]
    assert seen == {"read 1", "read 2", "read 3"}


def test_worker_count(monkeypatch):
    assert resolve_workers("auto", 1, "cpu") == 1
    # auto on 2 cores: a worker per core when the runs divide evenly, else all at once (no core idles at the end)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert [resolve_workers("auto", n, "cpu") for n in (2, 3, 4, 5, 7, 8, 9, 11)] == [2, 3, 2, 5, 7, 2, 8, 8]
    assert resolve_workers(4, 3, "cpu") == 3 and resolve_workers(2, 5, "cpu") == 2
    assert resolve_workers("auto", 8, "cuda:0") == 1  # a CUDA context does not survive a fork
