"""eventfed streams: the normaliser, codecs and the Faust app."""
