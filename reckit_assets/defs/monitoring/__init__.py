"""Monitoring of what is served: online metrics, the canary judge and retraining triggers."""
