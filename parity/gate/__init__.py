"""The pre-release gate: re-embed a baseline's texts today, say what drifted and why.

run.py runs the gate, explain.py says why an adapter drifted, result.py holds the verdict."""

from parity.gate.result import DEFAULT_MAX_NDCG_DROP, GateResult
from parity.gate.run import match_adapters, run_gate, verdict_line

__all__ = ["DEFAULT_MAX_NDCG_DROP", "GateResult", "match_adapters", "run_gate", "verdict_line"]
