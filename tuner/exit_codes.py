"""Exit codes of a search process, read by the worker (which must not import TensorFlow to learn them)."""

FAILED = 3
RECYCLE = 5  # stopped after its share of trials; a fresh process continues the job's search
