"""One file per method. Each exposes a scorer over cached features; see mlr_core.evaluate for the loop."""
