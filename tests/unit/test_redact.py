"""Errors users see never show where the server keeps its code, its Python or its data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from store.redact import CODE_DIR, redact_paths

VENV = Path(sys.prefix)


def test_a_traceback_shows_code_and_library_files_by_placeholder() -> None:
    traceback = (
        "Traceback (most recent call last):\n"
        f'  File "{CODE_DIR}/tuner/search.py", line 119, in run_search\n'
        f'  File "{VENV}/lib/python3.11/site-packages/keras/src/trainers/trainer.py", line 8, in fit\n'
        f'  File "{Path(sys.base_prefix).resolve()}/lib/python3.11/threading.py", line 982, in run\n'
        "ValueError: bad input"
    )
    redacted = redact_paths(traceback)
    assert redacted == (
        "Traceback (most recent call last):\n"
        '  File "<app>/tuner/search.py", line 119, in run_search\n'
        '  File "<venv>/lib/python3.11/site-packages/keras/src/trainers/trainer.py", line 8, in fit\n'
        '  File "<python>/lib/python3.11/threading.py", line 982, in run\n'
        "ValueError: bad input"
    )


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            "FileNotFoundError: [Errno 2] No such file or directory: '/srv/droptune/var/datasets/ds_1a2b.npz'",
            "FileNotFoundError: [Errno 2] No such file or directory: '.../ds_1a2b.npz'",
        ),
        ("OSError: cannot write /tmp/pytest-7/tuner/oracle.json", "OSError: cannot write .../oracle.json"),
        ("PermissionError: (path=/home/ops/data/x.csv)", "PermissionError: (path=.../x.csv)"),
        ("see /a/b/c and \"/d/e/f.py\"", "see .../c and \".../f.py\""),
    ],
)
def test_any_other_absolute_path_keeps_only_its_last_part(message: str, shown: str) -> None:
    assert redact_paths(message) == shown


@pytest.mark.parametrize(
    "message",
    [
        "training diverged: loss is nan at epoch 3 (scale the target or lower the learning rate)",
        "val_loss/val_accuracy went 1/2 of the way",
        "could not reach postgresql+psycopg://db.internal:5432/droptune or https://example.org/a/b",
        "the search process crashed 4 times (budget 3); last: killed by signal 9 (SIGKILL)",
        "relative paths such as datasets/ds_1.npz stay",
    ],
)
def test_text_without_absolute_paths_is_left_as_it_is(message: str) -> None:
    assert redact_paths(message) == message
