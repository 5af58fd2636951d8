"""The Typer + Rich command-line interface: parses options, calls core, renders results."""
