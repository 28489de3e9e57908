"""Reporting: MLflow tracking and plots of runs."""
