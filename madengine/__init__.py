"""madengine: discover, build, run and compare AI model benchmarks from a MAD package."""

__version__ = "0.1.0"
