"""Where people meet the bot: the Discord bot, the terminal chat, and ``render-prompt`` for checking prompts."""
