"""Exit codes of a search process, read by the worker (which must not import TensorFlow to learn them),
and the variable through which the worker tells its search processes whose job they write for."""

FAILED = 3
RECYCLE = 5  # stopped after its share of trials; a fresh process continues the job's search
LOST = 7  # the job is no longer its worker's (requeued, taken by another): stopped, settled nothing

WORKER_ID_ENV = "DROPTUNE_SEARCH_WORKER_ID"
