"""The Discord frontend, as a map.

- ``app/``: the application: the client (:mod:`.app.client`), running it (:mod:`.app.runner`), the access gate,
  Discord's global rate limit, the health heartbeat, catch-up after a reconnect, the invite link, endpoints.
- ``ui/``: screen pieces every feature shares: rendering a streamed reply, splitting long text, the reply and
  scene buttons, error replies (:mod:`.ui.feedback`), the reply streamer (:mod:`.ui.replying`) and the characters'
  webhook voices (:mod:`.ui.voices`).
- ``features/``: one module or package per feature (its cog with its buttons and forms beside it), registered from
  the one list in :mod:`.features`.
- :mod:`.services`: what a feature is given (it never imports the bot class).
"""
