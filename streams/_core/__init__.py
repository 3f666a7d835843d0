"""The contract, the shared stream machinery, and the errors. Import from :mod:`streams`."""
