"""Where each request runs: candidate plans, their costs, the measured profiles, the planner.

Pure: no IO. The gateway gathers what the planner reads (profiles, live link state) and
carries out what it decides."""
