"""The networks, with TensorFlow: `dropout_net` builds one trial's Keras model (`build(hp, config)`),
`packed_net` fuses K of them into one model for the packed trainer and cuts a plain model back out,
and `mc_dropout` runs and scores Monte Carlo dropout passes over a trained one. The spec's facts they
follow (each task's metric, where a network has dropout) come from `store.spec`."""
