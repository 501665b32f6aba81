"""topup-sim: a prepaid-credits billing module (``sim.billing``) and the harness around it."""
