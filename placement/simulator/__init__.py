"""Discrete-event simulator: replays requests against a Plan with the roofline performance model."""

from placement.simulator.run import SimOptions, SimRequest, SimResult, requests_from_trace, simulate

__all__ = ["SimOptions", "SimRequest", "SimResult", "requests_from_trace", "simulate"]
