"""`eventfed simulate` and the demo's report: a simulated cloud's Nova notifications."""
