"""The action layer: policies turn forecasts into audited, limited, reversible commands run locally or over SSH.

Modules: templates (quoting), policy (forecast -> decision), state (sqlite state machine), limits (blast radius),
executor (local/SSH), audit (jsonl + store + Grafana), engine (wires them; the API the CLI and daemon call).
"""
