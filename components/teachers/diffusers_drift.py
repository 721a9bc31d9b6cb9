"""A diffusers model the user points to, read as our drift b_s(x) (never downloaded).

The model predicts in its own frame (`noise_schedules`); its output is turned into
estimates of the data x1 and the noise eps, and the drift of our interpolant is their
conditional expectation of dx_s/ds (paper, Sec. 2.1):

    b_s(x) = alpha'(s) E[eps | x_s = x] + beta'(s) E[x1 | x_s = x].

At times outside the model's trained noise levels (DDPM's first and last level, EDM's
sigma_min and sigma_max) the drift is the model's at the nearest trained level, as its
own samplers start and stop there.
"""

import contextlib
import importlib
import json
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from flowmap_components.teachers import noise_schedules as schedules
from flowmap_core.flow_map import expand_time
from flowmap_core.protocols import Interpolant

SCHEDULERS = {
    "ddpm": (
        "DDPMScheduler",
        "DDIMScheduler",
        "PNDMScheduler",
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "HeunDiscreteScheduler",
        "LMSDiscreteScheduler",
        "DPMSolverMultistepScheduler",
        "DPMSolverSinglestepScheduler",
        "UniPCMultistepScheduler",
    ),
    "edm": ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler"),
    "rectified_flow": ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler"),
}


class DiffusersError(ValueError):
    """A diffusers folder that cannot serve as a teacher (the message says why)."""


def diffusers_module():
    try:
        import diffusers
    except ImportError:
        raise DiffusersError(
            "reading a diffusers model needs the optional extra: pip install -e '.[pretrained]'"
        ) from None
    return diffusers


def load_model(folder: Path, model_class: str | None) -> nn.Module:
    """The `ModelMixin` saved in `folder` (its config.json names the class), frozen, in eval mode."""
    diffusers = diffusers_module()
    if not folder.is_dir():
        raise DiffusersError(f"{folder} is not a folder")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise DiffusersError(
            f"{folder} is not a diffusers model folder (no config.json); "
            "for a pipeline folder, bind subfolder = 'unet' or 'transformer'"
        )
    name = json.loads(config_file.read_text()).get("_class_name")
    if model_class is not None:
        module, _, attribute = model_class.partition(":")
        cls = getattr(importlib.import_module(module), attribute, None)
    else:
        cls = getattr(diffusers, name, None) if name else None
    if not isinstance(cls, type) or not issubclass(cls, diffusers.ModelMixin):
        raise DiffusersError(
            f"{config_file} names the class {name!r}, which is not a diffusers ModelMixin; "
            "bind model_class = 'module:Class' for a model of your own"
        )
    return frozen(cls, folder)


def frozen(cls: type, folder: Path, error: type[Exception] = DiffusersError) -> nn.Module:
    """`cls.from_pretrained(folder)` from local files only, frozen and in eval mode; a failure
    to load is one `error` naming the class, the folder and the first line of the reason."""
    try:
        with quiet(diffusers_module()):
            model = cls.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError) as reason:
        first_line = str(reason).strip().splitlines()[0] if str(reason).strip() else type(reason).__name__
        raise error(f"could not load {cls.__name__} from {folder}: {first_line}") from None
    return model.eval().requires_grad_(False)


@contextlib.contextmanager
def quiet(diffusers):
    """diffusers' log at errors only (its loading and casting advice is not ours to print)."""
    verbosity = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers.utils.logging.set_verbosity(verbosity)


def scheduler_config(folder: Path, scheduler: str | None) -> dict:
    """The scheduler config next to the model: `scheduler` (a folder or file), else
    FOLDER/scheduler_config.json or FOLDER/../scheduler/scheduler_config.json ({} if none)."""
    candidates = (
        [Path(scheduler)]
        if scheduler is not None
        else [folder / "scheduler_config.json", folder.parent / "scheduler" / "scheduler_config.json"]
    )
    for path in candidates:
        path = path / "scheduler_config.json" if path.is_dir() else path
        if path.is_file():
            return json.loads(path.read_text())
    if scheduler is not None:
        raise DiffusersError(f"no scheduler config at {scheduler}")
    return {}


def make_schedule(kind: str | None, config: dict) -> schedules.Schedule:
    """The schedule named `kind` (or by the scheduler config's class), with the config's settings."""
    if kind is None:
        name = config.get("_class_name")
        kind = next((k for k, names in SCHEDULERS.items() if name in names), None)
        if kind is None:
            raise DiffusersError(
                f"cannot tell the noise schedule from the scheduler {name!r}: "
                f"bind schedule = one of {', '.join(map(repr, SCHEDULERS))}"
            )
    if kind == "ddpm":
        settings = {k: v for k, v in config.items() if not k.startswith("_")}
        table = diffusers_module().DDPMScheduler.from_config(settings).alphas_cumprod
        return schedules.DDPM(alphas_cumprod=table.clamp(1e-12, 1 - 1e-12).tolist())
    if kind == "edm":
        keys = ("sigma_data", "sigma_min", "sigma_max")
        return schedules.EDM(**{k: float(config[k]) for k in keys if k in config})
    if kind == "rectified_flow":
        return schedules.RectifiedFlow(num_train_timesteps=int(config.get("num_train_timesteps", 1000)))
    raise DiffusersError(f"unknown noise schedule {kind!r}: one of {', '.join(map(repr, SCHEDULERS))}")


def check_prediction(prediction: str | None, config: dict, schedule: schedules.Schedule) -> str:
    """The prediction type (bound, else the scheduler config's), checked against the schedule."""
    prediction = prediction if prediction is not None else config.get("prediction_type")
    if prediction is None:
        raise DiffusersError(
            "the model's prediction type is unknown: bind prediction = 'epsilon', 'sample', 'v_prediction' or 'flow'"
        )
    if prediction not in schedules.PREDICTIONS:
        raise DiffusersError(
            f"unknown prediction type {prediction!r}: one of {', '.join(map(repr, schedules.PREDICTIONS))}"
        )
    if schedule.kind not in schedules.PREDICTIONS[prediction]:
        raise DiffusersError(f"prediction {prediction!r} is not defined under the {schedule.kind!r} schedule")
    return prediction


class DiffusersDrift(nn.Module):
    """b_s(x) of a pretrained diffusers `model` under our interpolant (module docstring).

    `forward(x, s, t, label=None, guidance=None)` returns the drift at s as one head
    `(batch, 1, *shape)`, whatever t is: read through `parameterisation.euler` it is the
    teacher's Euler map X_{s,t}(x) = x + (t - s) b_s(x), whose diagonal is the drift.
    """

    def __init__(self, model: nn.Module, schedule: schedules.Schedule, prediction: str, interpolant: Interpolant):
        super().__init__()
        self.model = model
        self.schedule = schedule
        self.prediction = prediction
        self.interpolant = interpolant
        self.time_range = _times_of(interpolant, *schedule.rho_range)

    def forward(
        self, x: Tensor, s: Tensor, t: Tensor, label: Tensor | None = None, guidance: Tensor | None = None
    ) -> Tensor:
        return self.drift(x, s, label).unsqueeze(1)

    def tangent(
        self,
        x: Tensor,
        s: Tensor,
        t: Tensor,
        dx: Tensor | None,
        ds: Tensor | None,
        dt: Tensor | None,
        label: Tensor | None = None,
        guidance: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """`forward` and its derivative along (dx, ds) by forward-mode AD (t does not enter)."""
        dx = torch.zeros_like(x) if dx is None else dx
        ds = torch.zeros_like(s) if ds is None else ds
        return torch.func.jvp(lambda x, s: self.forward(x, s, t, label), (x, s), (dx, ds))

    def drift(self, x: Tensor, s: Tensor, label: Tensor | None = None) -> Tensor:
        s = s.clamp(*self.time_range)
        c = self.interpolant.coefficients(s)
        frame = self.schedule.frame(c.alpha, c.beta)
        x_m = x * expand_time(frame.scale, x)
        out = self._call_model(self.schedule.precondition(x_m, frame), frame.timestep, label, channels=x.shape[1])
        out, prediction = self.schedule.denoised(x_m, out, frame, self.prediction)
        x1, eps = schedules.data_and_noise(prediction, x_m, out, frame)
        return expand_time(c.alpha_dot, x) * eps + expand_time(c.beta_dot, x) * x1

    def _call_model(self, x_m: Tensor, timestep: Tensor, label: Tensor | None, channels: int) -> Tensor:
        kwargs = {}
        if label is not None:
            null = getattr(self.model.config, "num_embeds_ada_norm", None)  # DiT's null class
            if null is None and bool((label < 0).any()):
                raise DiffusersError(f"{type(self.model).__name__} has no null class for unlabelled rows (label -1)")
            kwargs["class_labels"] = torch.where(label < 0, null if null is not None else 0, label)
        out = self.model(x_m, timestep, **kwargs)
        out = out.sample if hasattr(out, "sample") else out[0] if isinstance(out, tuple) else out
        return out[:, :channels] if out.shape[1] == 2 * channels else out  # a learned variance: its mean half


def _times_of(interpolant: Interpolant, rho_low: float, rho_high: float) -> tuple[float, float]:
    """Our times [s_low, s_high] where alpha / beta falls from `rho_high` to `rho_low` (by bisection)."""

    def time_at(rho: float) -> float:
        if rho == math.inf:
            return 0.0
        if rho == 0.0:
            return 1.0
        low, high = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (low + high)
            c = interpolant.coefficients(torch.tensor([mid], dtype=torch.float64))
            if (c.alpha / c.beta).item() > rho:
                low = mid
            else:
                high = mid
        return 0.5 * (low + high)

    return time_at(rho_high), time_at(rho_low)
