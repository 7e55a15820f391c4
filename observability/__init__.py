"""Metrics and structured logs: how an operator watches caregraph run."""
