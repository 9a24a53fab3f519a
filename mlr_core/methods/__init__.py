"""One file per method; :mod:`mlr_core.methods.registry` maps method names to them."""
