"""The `ncodec` command."""
