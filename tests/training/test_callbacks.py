import math

import torch
from transformers import TrainerState, TrainingArguments

from embedtune.losses.components import LossComponents
from embedtune.training.callbacks import LossComponentsCallback, is_histogram_worthy, module_gradient_norms


def test_module_gradient_norms_group_parameters_by_module():
    gradients = {
        "encoder.layer.0.weight": torch.tensor([3.0, 0.0]),
        "encoder.layer.0.bias": torch.tensor([4.0]),
        "pooler.weight": torch.tensor([[1.0, 1.0], [1.0, 1.0]]),
        "broken.weight": torch.tensor([math.inf]),
    }
    assert module_gradient_norms(gradients) == {"encoder.layer.0": 5.0, "pooler": 2.0}


def test_histograms_skip_empty_all_zero_and_non_finite_gradients():
    assert is_histogram_worthy(torch.tensor([0.0, 1e-3]))
    assert not is_histogram_worthy(torch.zeros(0))
    assert not is_histogram_worthy(torch.zeros(3))
    assert not is_histogram_worthy(torch.tensor([1.0, math.nan]))
    assert not is_histogram_worthy(torch.tensor([1.0, -math.inf]))


def test_loss_diagnostics_are_measured_on_the_logged_steps_only():
    components = LossComponents()
    callback = LossComponentsCallback(writer=None, components=components)
    args = TrainingArguments(output_dir="unused", logging_steps=5, logging_first_step=True, report_to="none")
    state = TrainerState(logging_steps=5)
    measured = []
    for step in range(12):
        state.global_step = step
        callback.on_step_begin(args, state, None)
        measured.append(components.measuring)
    assert [step + 1 for step, flag in enumerate(measured) if flag] == [1, 5, 10]
