"""pmaintd: predictive maintenance for fleets."""
