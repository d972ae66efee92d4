"""`probes report`: a static, offline HTML report of runs and of their data."""

from probes.report.build import build_report

__all__ = ["build_report"]
