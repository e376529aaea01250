"""Serving the model: loading it, the local worker that owns the device, remote servers, the fair scheduler."""
