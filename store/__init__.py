"""droptune's database layer and shared domain: tables, sessions, queries, job specs, dataset files.

Both the API (`service`) and the worker (`tuner`) import this package; it never imports either of
them, nor TensorFlow.
"""
