"""The student started from a finished flowmap run: a flow-matching velocity becomes an Euler map."""

import attrs
from torch import nn

from flowmap_components.teachers.pretrained import load_finished_run
from flowmap_core.registry import register
from flowmap_core.validators import in_range


@register("warm_start", "run")
@attrs.define(frozen=True, kw_only=True)
class FromRun:
    """The weights of the finished run in `run_dir` (its EMA by default, or `weights`),
    loaded into a student with the same backbone; with `config`, a missing or unfinished
    run is trained first (as `teacher.pretrained` does).

    With `fold` (default), the second time is folded into the first
    (`fold_second_time`): a velocity trained on the diagonal, b_s = v_{s,s}, becomes the
    map X_{s,t}(x) = x + (t - s) b_s(x) at step 0 under `parameterisation.euler`, with the
    weights that read t at zero (the warm start of Decoupled MeanFlow, 2025).

    `output_scale` c multiplies the backbone's output (`scale_output`) when the student's
    head means c times the source's: sCD starts its TrigFlow head F from a flow-matching
    velocity b of the trigonometric interpolant with c = -2 / pi, since sCM's PF-ODE
    dx_t/dt = sigma_d F is, in our time s = 1 - 2 t / pi and units x_s = x_t / sigma_d,
    b = dx_s/ds = -(pi / 2) F (Lu & Song 2024, Sec. 5: sCD initialises from the teacher).
    """

    run_dir: str
    config: str | None = None
    weights: str | None = None
    fold: bool = True
    output_scale: float = attrs.field(default=1.0, validator=in_range(-100.0, 100.0))

    def apply(self, net: nn.Module) -> None:
        source = load_finished_run(self.run_dir, self.config, self.weights).net
        source = getattr(source, "_orig_mod", source)
        try:
            net.load_state_dict(source.state_dict())
        except RuntimeError as error:
            detail = str(error).strip().splitlines()[-1].strip()
            raise ValueError(
                f"warm_start.run: the backbone of {self.run_dir} ({type(source).__name__}) does not fit this "
                f"run's ({type(net).__name__}): {detail}"
            ) from None
        if self.fold:
            if not callable(getattr(net, "fold_second_time", None)):
                raise ValueError(
                    f"warm_start.run: {type(net).__name__} has no fold_second_time(); bind warm_start.run.fold = False"
                )
            net.fold_second_time()
        if self.output_scale != 1.0:
            if not callable(getattr(net, "scale_output", None)):
                raise ValueError(f"warm_start.run: {type(net).__name__} has no scale_output(); keep output_scale = 1")
            net.scale_output(self.output_scale)
