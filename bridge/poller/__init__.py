"""`eventfed poll`: Nova's servers API into the raw topic, for VIMs whose message bus is out of reach."""
