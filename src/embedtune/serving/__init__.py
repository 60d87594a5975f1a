"""``embedtune serve``: the HTTP API over a saved search index (:mod:`.app`) and its server (:mod:`.server`)."""
