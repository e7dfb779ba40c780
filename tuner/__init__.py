"""droptune's worker: claims jobs, runs keras-tuner searches in child processes, records trials.

Only `tuner.search` (the child) imports TensorFlow; the claim loop in `tuner.worker` stays light.
"""
