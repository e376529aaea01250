"""The bot's logic: conversations, prompt formats, the token budget, scenes, sources; no Discord, no torch."""
