"""The web console at /ui: what a marketer or ML engineer looks at instead of JSON (see `app`)."""
