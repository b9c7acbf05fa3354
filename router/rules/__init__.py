"""The rule table: matchers, the JSON Schema, and the engine that picks the first matching rule."""
