"""The lab: benchmarks, spotter training, the simulated room and test signals.

Never imported by the run time (tests/test_layout.py checks it) and not in the wheel
(pyproject lists the shipped packages; tests/test_packaging.py checks the wheel). It runs
from a checkout with the test or train extras."""
