"""Upstream-compatible import paths (``madengine.utils.*``) used by MAD packages' scripts."""
