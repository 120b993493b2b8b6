"""slmbench's built-in strategies, one module each, registered through the ``slmbench`` entry points."""
