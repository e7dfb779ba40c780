"""Keras model builders: `build(hp, config) -> keras.Model`, nothing else."""
