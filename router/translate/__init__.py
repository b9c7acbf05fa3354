"""Translation between client APIs and upstream APIs through one conversation model (router.translate.hub).

Each API module is pure (no I/O): request and answer to and from the hub, and stream decoders and
encoders that turn one API's server-sent events into hub events and back.
"""
