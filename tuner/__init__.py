"""droptune's worker: claims jobs, runs keras-tuner searches in child processes, records trials.

Only the child processes (`tuner.search`, `tuner.parallel`) import TensorFlow; the claim loop in
`tuner.worker` and the supervisor stay light.
"""
