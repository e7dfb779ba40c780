"""A job's search process that dies at one step of one trial's end, as a SIGKILL would leave it.

`python -m tests.e2e.kill_at_trial_end JOB_ID STEP TRIAL_ID` runs `tuner.search` for the job and
calls `os._exit(KILLED)` (no `finally`, no flush: nothing more reaches the disk or the store) when
trial TRIAL_ID reaches STEP of its end:

- `ending`: it trained; nothing of its end is saved yet;
- `oracle_saved`: keras-tuner's `oracle.end_trial` saved it ended (its file still lists it ongoing);
- `tuner_saved`: the tuner's save after it, so keras-tuner's state holds it ended and not ongoing;
  the store does not know yet (the window of issue 22's lost trial);
- `recorded`: the store has its end too.

With STEP `none` it runs the search to its end.
"""

from __future__ import annotations

import os
import sys
from typing import Any

KILLED = 137
STEPS = ("ending", "oracle_saved", "tuner_saved", "recorded")


def install(step: str, target: str) -> None:
    import keras_tuner as kt

    from tuner import recording

    ending: list[str] = []

    def die_at(here: str, trial_id: str) -> None:
        if here == step and trial_id == target:
            sys.stderr.write(f"killed at {step} of trial {trial_id}\n")
            sys.stderr.flush()
            os._exit(KILLED)

    on_trial_end = recording._RecordingMixin.on_trial_end

    def wrapped_on_trial_end(self: Any, trial: Any) -> None:
        die_at("ending", trial.trial_id)
        ending.append(trial.trial_id)
        try:
            on_trial_end(self, trial)
        finally:
            ending.pop()

    save = kt.engine.base_tuner.BaseTuner.save

    def wrapped_save(self: Any) -> None:
        if ending:  # keras-tuner's `on_trial_end`: `oracle.end_trial(trial)`, then this save
            die_at("oracle_saved", ending[-1])
        save(self)
        if ending:
            die_at("tuner_saved", ending[-1])

    trial_ended = recording.Recorder.trial_ended

    def wrapped_trial_ended(self: Any, trial: Any) -> None:
        trial_ended(self, trial)
        die_at("recorded", trial.trial_id)

    # Before the tuner exists: `resume_state.mirror` wraps the save it finds on the instance.
    recording._RecordingMixin.on_trial_end = wrapped_on_trial_end  # type: ignore[method-assign]
    kt.engine.base_tuner.BaseTuner.save = wrapped_save  # type: ignore[method-assign]
    recording.Recorder.trial_ended = wrapped_trial_ended  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    job_id, step, target = argv[1:4]
    if step != "none":
        assert step in STEPS, step
        install(step, target)
    from tuner import search

    return search.main(["tuner.search", job_id])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
