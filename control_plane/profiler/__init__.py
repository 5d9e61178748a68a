"""Measured profiles: the sustainable request rate of one worker per length bucket under an SLO."""
