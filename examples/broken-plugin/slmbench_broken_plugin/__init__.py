"""Deliberately broken slmbench plugins: one fails at import, one misspells its hook."""
