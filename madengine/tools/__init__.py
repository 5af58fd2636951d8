"""Upstream-compatible import paths (``madengine.tools.*``) used by MAD packages' scripts."""
