"""The web console and its HTTP API: the product's administrator windows over the admin commands."""
