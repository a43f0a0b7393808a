"""Writers for what a run found: summary.json (the contract) and report.md (for people)."""

from parity.report.markdown import render_markdown
from parity.report.summary import build_summary, write_json, write_outputs

__all__ = ["build_summary", "render_markdown", "write_json", "write_outputs"]
