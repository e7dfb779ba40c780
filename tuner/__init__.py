"""droptune's worker: claims jobs, runs keras-tuner searches in child processes, records trials.

Only child processes import TensorFlow (the warm launcher, `tuner.search` and the trial processes of
`tuner.parallel`, and the API's `tuner.predictor`); the claim loop in `tuner.worker` and the supervisor
stay light.
"""
