"""The application: the discord.py client, how it runs, and what guards it (access, rate limit, health)."""
