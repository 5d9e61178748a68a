"""Performance model: roofline timings (`roofline`) and their calibration against measurements
(`calibration`)."""
