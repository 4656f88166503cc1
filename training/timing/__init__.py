"""Next-purchase timing: discrete-time hazard models and the reminders they schedule.

- `config`: `TimingConfig` (the ``[timing]`` table of ``training/configs/repurchase.toml``);
- `hazard`: `HazardModel`, per user or per user x category;
- `schedule`: reminder outcomes, the tuned lead, the old fixed schedule, send times.
- `baselines`: the timing baselines the hazard models must beat;
- `bundle`: the user and user x category hazard models fitted together (what serving loads).

The point-in-time inputs (user x category joins, due features, active hours) live in
`features.timing`.
"""

from training.timing.config import TimingConfig
from training.timing.hazard import HazardModel
from training.timing.schedule import fixed_schedule_days, reminder_outcomes, reminder_timestamps, tune_lead

__all__ = [
    "HazardModel",
    "TimingConfig",
    "fixed_schedule_days",
    "reminder_outcomes",
    "reminder_timestamps",
    "tune_lead",
]
