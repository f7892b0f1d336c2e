"""Forecasting engine: features, labels, training, bundles, evaluation, explanations, scoring.

Generic over entity kinds (disk, host, network); a kind is described by a `FeatureSpec`. This package depends
only on telemetry.py, config.py and the Store protocol, never on collect/ or act/.
"""
