"""Framework-free core: storage, landing contract, feature spec and computation, metrics, models.

Nothing under ``reckit_assets.core`` imports dagster, so ``serving/`` and the CLI reuse it as is.
"""
