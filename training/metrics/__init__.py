"""Metrics that training and evaluation log: ranking (`ranking`) and classification (`classification`)."""
