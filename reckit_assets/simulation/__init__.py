"""The world the pipeline runs against (simulated users, items and their logs); not a stage."""
