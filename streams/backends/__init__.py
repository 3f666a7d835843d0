"""Backends: each runs one real protocol behind the :class:`~streams.StreamProvider` contract."""
