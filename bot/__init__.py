"""A self-hosted Discord bot for the airoboros-7b-gpt4-1.4.1 QLoRA model.

Map of the package:

- ``bot.config``: the TOML configuration, validated once at start-up.
- ``bot.errors``: every error a user or operator can see, each with its own text.
- ``bot.core``: conversations, prompt formats and the token budget (knows neither Discord nor torch).
- ``bot.inference``: model loading, the worker that owns the device, the fair scheduler.
- ``bot.store``: SQLite storage (aiosqlite) with versioned migrations.
- ``bot.frontends``: the terminal chat and the Discord bot.
"""

__version__ = "0.1.0"
