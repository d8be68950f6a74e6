"""The neural command spotter: a small classifier head over openWakeWord's speech embedding."""
