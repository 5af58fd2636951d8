"""One module per madengine-cli command."""
