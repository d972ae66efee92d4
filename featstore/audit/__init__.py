"""Data hygiene on stored features: duplicates, leaks across splits, likely label errors."""

from featstore.audit.audit import AUTO_MAX_ROWS, DEFAULT_THRESHOLD, AuditResult, audit_feature_set, audit_rows, check_labels
from featstore.audit.clusters import Cluster
from featstore.audit.labels import LabelIssues, find_label_issues
from featstore.audit.neighbours import close_pairs
from featstore.audit.rows import AuditRows, array_rows, store_rows

__all__ = ["AUTO_MAX_ROWS", "DEFAULT_THRESHOLD", "AuditResult", "AuditRows", "Cluster", "LabelIssues", "array_rows", "audit_feature_set",
           "audit_rows", "check_labels", "close_pairs", "find_label_issues", "store_rows"]
