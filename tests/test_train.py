"""The budget rule (mlr_core.train): steps not epochs, the schedule in steps, the best validation weights kept."""
import pytest
import torch

from mlr_core.train import OptimConfig, fit, lr_factor


def _cfg(**kw):
    base = dict(optimizer="sgd", lr=0.1, weight_decay=0.0, batch_size=4, steps=12, warmup_steps=0, eval_every=3)
    return OptimConfig(**{**base, **kw})


def test_the_budget_is_steps_whatever_the_data_size():
    for n in (3, 10, 100):
        calls = []
        w = torch.nn.Parameter(torch.zeros(1))
        module = torch.nn.Module()
        module.w = w
        result = fit(module, {"x": torch.ones(n)}, lambda b: (calls.append(len(b["x"])) or (w - 1).pow(2).sum()),
                     _cfg(), seed=0, desc="t")
        assert len(calls) == 12 and result.samples == sum(calls) and result.record()["steps"] == 12
        assert [e["step"] for e in result.log] == [3, 6, 9, 12]


def test_the_weights_kept_are_the_best_on_the_validation_signal():
    """w walks 0 -> 1 by gradient steps; the validation signal peaks where w is closest to 0.3, so the kept w
    is the one logged at that evaluation, not the last."""
    w = torch.nn.Parameter(torch.zeros(1))
    module = torch.nn.Module()
    module.w = w
    seen = {}

    def validate():
        seen[len(seen)] = float(w.detach())
        return {"val": round(-abs(float(w) - 0.3), 6)}

    result = fit(module, {"x": torch.ones(8)}, lambda b: (w - 1).pow(2).sum(), _cfg(lr=0.05, steps=30, eval_every=2),
                 seed=0, desc="t", validate=validate, select="val")
    best = max(range(len(seen)), key=lambda k: (-abs(seen[k] - 0.3), -k))
    assert result.selected_step == result.log[best]["step"] < 30
    assert float(w.detach()) == pytest.approx(seen[best])
    assert result.record()["selected_on"] == "val" and result.record()["selected_value"] == result.log[best]["val"]


def test_patience_stops_a_run_after_evaluations_without_a_new_best_and_keeps_the_best():
    """The signal rises until the 4th evaluation, then falls: with patience 3 the run stops at the 7th (step 14
    of 30), keeps the weights of the 4th, and does what the full run would have kept."""
    signal = [1, 2, 3, 4, 3.5, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0]

    def run(patience):
        w = torch.nn.Parameter(torch.zeros(1))
        module = torch.nn.Module()
        module.w = w
        calls = []
        result = fit(module, {"x": torch.ones(8)}, lambda b: (calls.append(1) or (w - 1).pow(2).sum()),
                     _cfg(lr=0.05, steps=30, eval_every=2, patience=patience), seed=0, desc="t",
                     validate=lambda: {"val": signal[len(calls) // 2 - 1]}, select="val")
        return result, float(w.detach()), len(calls)

    stopped, w_stopped, n_stopped = run(3)
    full, w_full, n_full = run(None)
    assert (n_stopped, n_full) == (14, 30)
    assert stopped.record()["steps_run"] == 14 and full.record()["steps_run"] == 30
    assert stopped.selected_step == full.selected_step == 8 and w_stopped == w_full


def test_keep_restores_another_module_and_on_step_runs_each_step():
    w = torch.nn.Parameter(torch.zeros(1))
    module, shadow = torch.nn.Module(), torch.nn.Module()
    module.w, shadow.w = w, torch.nn.Parameter(torch.zeros(1), requires_grad=False)
    steps = []

    def on_step():
        steps.append(1)
        with torch.no_grad():
            shadow.w.copy_(w)

    values = iter([3.0, 1.0, 2.0, 0.0])
    result = fit(module, {"x": torch.ones(4)}, lambda b: (w - 1).pow(2).sum(), _cfg(), seed=0, desc="t",
                 validate=lambda: {"v": next(values)}, select="v", keep=shadow, on_step=on_step)
    assert len(steps) == 12 and result.selected_step == 3
    assert float(shadow.w) != float(w.detach())  # the shadow went back to step 3, the trained module did not


def test_schedule_in_steps():
    cfg = _cfg(steps=100, warmup_steps=10)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == 1.0 and lr_factor(99, cfg) < 0.01
    step = _cfg(steps=100, schedule="step", milestones=(0.2, 0.5))
    assert [lr_factor(s, step) for s in (19, 20, 49, 50)] == pytest.approx([1.0, 0.1, 0.1, 0.01])
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, _cfg(schedule="linear"))
