"""The inference service (issue: serving). Reuses reckit_assets.core for features and models."""
