"""Screen pieces every feature shares: streamed replies, message splitting, buttons, error replies, voices."""
